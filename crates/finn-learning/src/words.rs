//! Words: tokenizing, stop words, a light stemmer, and whole-word term and phrase matching.
//!
//! The anchors matched every term as a case-insensitive *substring*, so `if` matched
//! "d**if**ferent", `all` matched "inst**all**" and `test` matched "la**test**". finn matches whole
//! words. To keep the anchors' intent that "fail" counts in "fails" and "failed", a term also
//! matches a word that is the term plus a common English inflection (see [`term_matches`]).

/// Words retrieval ignores: they carry no topic and occur in nearly every learning.
const STOP_WORDS: &[&str] = &[
    "a", "about", "after", "again", "all", "also", "am", "an", "and", "any", "are", "as", "at",
    "be", "been", "before", "being", "both", "but", "by", "can", "could", "did", "do", "does",
    "doing", "during", "each", "for", "from", "had", "has", "have", "having", "he", "her", "here",
    "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me",
    "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or",
    "other", "our", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "through",
    "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your",
];

/// Inflections a scorer term may carry and still count as the same word.
const SUFFIXES: &[&str] = &[
    "s", "es", "ed", "d", "ing", "er", "ers", "ure", "ures", "ment", "ments", "ion", "ions",
    "ation", "ations",
];

/// Whether `word` (lower-case) is a stop word.
pub fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// Splits text into lower-case words: maximal runs of alphanumeric characters.
///
/// ```
/// # use finn_learning::words::words;
/// assert_eq!(words("Don't retry: npm-install FAILED!"), ["don", "t", "retry", "npm", "install", "failed"]);
/// ```
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Retrieval terms of `text`: words, minus stop words and one-letter words, stemmed.
pub fn terms(text: &str) -> Vec<String> {
    words(text)
        .into_iter()
        .filter(|w| w.chars().count() > 1 && !is_stop_word(w))
        .map(|w| stem(&w))
        .collect()
}

/// A deliberately light English stemmer (plural and past/progressive endings only).
///
/// It maps "deploying", "deployed" and "deploys" to "deploy", "fails"/"failed" to "fail",
/// "retries" to "retry". It never stems words of four letters or fewer, so "uses", "bus" and "is"
/// survive. Over-stemming costs precision in retrieval, which BM25 recovers through the other
/// terms; a real stemmer (Porter) would be a dependency for little gain on short texts.
pub fn stem(word: &str) -> String {
    if !word.is_ascii() || word.len() <= 4 {
        return word.to_owned();
    }
    let w = word;
    if let Some(base) = w.strip_suffix("ies") {
        return format!("{base}y");
    }
    if let Some(base) = w.strip_suffix("ied") {
        return format!("{base}y");
    }
    if let Some(base) = w.strip_suffix("ing").filter(|b| b.len() >= 3) {
        return undouble(base);
    }
    if let Some(base) = w.strip_suffix("ed").filter(|b| b.len() >= 3) {
        return undouble(base);
    }
    for end in ["sses", "shes", "xes", "zes"] {
        if w.ends_with(end) {
            return w[..w.len() - 2].to_owned();
        }
    }
    if w.ends_with('s') && !w.ends_with("ss") && !w.ends_with("us") && !w.ends_with("is") {
        return w[..w.len() - 1].to_owned();
    }
    w.to_owned()
}

/// "stopp" → "stop", "runn" → "run"; keeps "ll", "ss", "zz" ("install", "pass").
fn undouble(base: &str) -> String {
    let b = base.as_bytes();
    let n = b.len();
    if n >= 2 && b[n - 1] == b[n - 2] && !matches!(b[n - 1], b'l' | b's' | b'z') {
        base[..n - 1].to_owned()
    } else {
        base.to_owned()
    }
}

/// Whether `word` is `term` or `term` plus one of the inflections in `SUFFIXES`
/// (a final `e` of the term may drop before a vowel suffix: "create" → "creating").
///
/// ```
/// # use finn_learning::words::term_matches;
/// assert!(term_matches("fail", "failed"));
/// assert!(term_matches("create", "creating"));
/// assert!(!term_matches("all", "install"));
/// assert!(!term_matches("if", "different"));
/// ```
pub fn term_matches(term: &str, word: &str) -> bool {
    if word == term {
        return true;
    }
    let Some(rest) = word.strip_prefix(term) else {
        return match term.strip_suffix('e') {
            Some(stemmed) => word
                .strip_prefix(stemmed)
                .is_some_and(|rest| rest.starts_with(['i', 'a']) && SUFFIXES.contains(&rest)),
            None => false,
        };
    };
    SUFFIXES.contains(&rest)
}

/// Lower-cased words of a text, for repeated term and phrase lookups.
#[derive(Clone, Debug)]
pub struct WordList {
    words: Vec<String>,
}

impl WordList {
    /// Splits `text` into words.
    pub fn new(text: &str) -> Self {
        WordList { words: words(text) }
    }

    /// Whether the text holds `term` as a whole word (with inflections, see [`term_matches`]).
    /// A multi-word term ("as well") matches a run of consecutive words; only its last word may
    /// carry an inflection.
    pub fn contains(&self, term: &str) -> bool {
        let parts = words(term);
        match parts.as_slice() {
            [] => false,
            [one] => self.words.iter().any(|w| term_matches(one, w)),
            many => self.words.windows(many.len()).any(|win| {
                win.iter().zip(many).enumerate().all(|(i, (w, t))| {
                    if i + 1 == many.len() {
                        term_matches(t, w)
                    } else {
                        w == t
                    }
                })
            }),
        }
    }

    /// How many of `terms` occur (each counted once).
    pub fn count_present(&self, terms: &[&str]) -> usize {
        terms.iter().filter(|t| self.contains(t)).count()
    }

    /// Whether `lead` occurs as a whole word followed by another word (the anchors'
    /// `lead\s+\w+`).
    pub fn followed_by_word(&self, lead: &str) -> bool {
        self.words
            .windows(2)
            .any(|w| w[0] == lead && w[1].chars().any(char::is_alphanumeric))
    }

    /// The words.
    pub fn as_slice(&self) -> &[String] {
        &self.words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        let mut sorted = STOP_WORDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, STOP_WORDS);
    }

    #[test]
    fn substrings_inside_words_do_not_match() {
        let w = WordList::new("a different install with the latest build");
        assert!(!w.contains("if"));
        assert!(!w.contains("all"));
        assert!(!w.contains("test"));
        assert!(w.contains("build"));
        assert!(w.contains("with"));
    }

    #[test]
    fn inflections_match_their_term() {
        let w = WordList::new("Deploying failed; retries crashed the updated service");
        for t in ["deploy", "fail", "crash", "update"] {
            assert!(w.contains(t), "{t}");
        }
        assert!(
            !w.contains("retry"),
            "irregular plural is not an inflection of the scorer term"
        );
    }

    #[test]
    fn phrases_match_consecutive_words() {
        let w = WordList::new("works for this repo as well, not only this file");
        assert!(w.contains("as well"));
        assert!(w.contains("only this file"));
        assert!(!w.contains("this repo well"));
    }

    #[test]
    fn stemmer_conflates_common_inflections() {
        for (a, b) in [
            ("deploying", "deploy"),
            ("deployed", "deploy"),
            ("fails", "fail"),
            ("retries", "retry"),
            ("stopping", "stop"),
            ("installing", "install"),
            ("builds", "build"),
            ("timeouts", "timeout"),
            ("caches", "cache"),
            ("pushes", "push"),
            ("status", "status"),
            ("uses", "uses"),
        ] {
            assert_eq!(stem(a), b, "{a}");
        }
    }

    #[test]
    fn terms_drop_stop_words_and_stem() {
        assert_eq!(
            terms("When the deploy is failing with a timeout"),
            ["deploy", "fail", "timeout"]
        );
    }
}
