//! The retrieval index: an inverted index with BM25 scoring over active learnings.
//!
//! Each active learning is one document made of its trigger and tags (weight 2: they say *when* a
//! learning applies) and its title, pattern and solution (weight 1), reduced to stemmed,
//! stop-word-free terms ([`words::terms`](crate::words::terms)). A query walks only the posting
//! lists of its own terms, so its cost grows with how many learnings share its words, not with how
//! many learnings exist.
//!
//! Removing a learning (archive, reject) marks its slot dead and fixes document frequencies at
//! once; dead postings are skipped and dropped when the index rebuilds itself after dead slots
//! outnumber live ones.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::LearningId;
use crate::record::Learning;

/// BM25 term-frequency saturation.
const K1: f32 = 1.2;
/// BM25 length normalisation.
const B: f32 = 0.75;

/// Which part of a learning a term came from (sets its weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// Trigger and tags.
    Trigger,
    /// Title, pattern, solution.
    Body,
}

impl Field {
    fn weight(self) -> f32 {
        match self {
            Field::Trigger => 2.0,
            Field::Body => 1.0,
        }
    }
}

/// A retrieval hit.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    /// The learning.
    pub id: LearningId,
    /// BM25 score times the learning's effectiveness weight; higher is better.
    pub score: f64,
    /// How many distinct query terms the learning contains.
    pub hits: usize,
}

#[derive(Clone, Copy, Debug)]
struct Posting {
    doc: u32,
    tf: f32,
}

#[derive(Clone, Debug)]
struct Doc {
    id: LearningId,
    len: f32,
    weight: f32,
    live: bool,
    terms: Vec<u32>,
}

/// Inverted index over the active learnings.
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    dictionary: HashMap<String, u32>,
    postings: Vec<Vec<Posting>>,
    /// Live documents containing each term.
    df: Vec<u32>,
    docs: Vec<Doc>,
    slot_of: HashMap<LearningId, u32>,
    live: u32,
    live_len: f64,
}

fn document_terms(l: &Learning) -> Vec<(String, Field)> {
    let mut out = Vec::new();
    let mut push = |text: &str, field: Field| {
        out.extend(crate::words::terms(text).into_iter().map(|t| (t, field)));
    };
    push(&l.trigger, Field::Trigger);
    for tag in &l.tags {
        push(tag, Field::Trigger);
    }
    push(l.title.as_deref().unwrap_or(""), Field::Body);
    push(&l.pattern, Field::Body);
    push(&l.solution, Field::Body);
    out
}

impl Index {
    /// Number of live documents.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.live as usize
    }

    /// Adds (or replaces) a learning's document.
    pub(crate) fn insert(&mut self, l: &Learning, weight: f64) {
        self.remove(&l.id);
        let Ok(slot) = u32::try_from(self.docs.len()) else {
            return;
        };
        let mut tf: HashMap<u32, f32> = HashMap::new();
        let mut len = 0.0f32;
        for (term, field) in document_terms(l) {
            let next = u32::try_from(self.postings.len()).unwrap_or(u32::MAX);
            let tid = *self.dictionary.entry(term).or_insert(next);
            if tid as usize == self.postings.len() {
                self.postings.push(Vec::new());
                self.df.push(0);
            }
            *tf.entry(tid).or_default() += field.weight();
            len += field.weight();
        }
        let mut terms: Vec<u32> = tf.keys().copied().collect();
        terms.sort_unstable();
        for &tid in &terms {
            let t = tid as usize;
            self.postings[t].push(Posting {
                doc: slot,
                tf: tf[&tid],
            });
            self.df[t] += 1;
        }
        self.docs.push(Doc {
            id: l.id.clone(),
            len,
            weight: weight as f32,
            live: true,
            terms,
        });
        self.slot_of.insert(l.id.clone(), slot);
        self.live += 1;
        self.live_len += f64::from(len);
    }

    /// Removes a learning's document, if indexed.
    pub(crate) fn remove(&mut self, id: &LearningId) {
        let Some(slot) = self.slot_of.remove(id) else {
            return;
        };
        let doc = &mut self.docs[slot as usize];
        doc.live = false;
        for &tid in &doc.terms {
            self.df[tid as usize] -= 1;
        }
        self.live -= 1;
        self.live_len -= f64::from(doc.len);
        let dead = self.docs.len() - self.live as usize;
        if dead > 1024 && dead > self.live as usize {
            self.rebuild();
        }
    }

    /// Updates the effectiveness weight of an indexed learning.
    pub(crate) fn set_weight(&mut self, id: &LearningId, weight: f64) {
        if let Some(&slot) = self.slot_of.get(id) {
            self.docs[slot as usize].weight = weight as f32;
        }
    }

    fn rebuild(&mut self) {
        let mut remap = vec![u32::MAX; self.docs.len()];
        let mut docs = Vec::with_capacity(self.live as usize);
        for (old, doc) in std::mem::take(&mut self.docs).into_iter().enumerate() {
            if doc.live {
                remap[old] = u32::try_from(docs.len()).unwrap_or(u32::MAX);
                docs.push(doc);
            }
        }
        for list in &mut self.postings {
            list.retain_mut(|p| {
                let new = remap[p.doc as usize];
                p.doc = new;
                new != u32::MAX
            });
        }
        self.slot_of = docs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        self.docs = docs;
    }

    /// The best `limit` learnings for `context` that contain at least `min_hits` distinct query
    /// terms (all of them if the context has fewer), best first, ties broken by id.
    pub(crate) fn search(&self, context: &str, limit: usize, min_hits: usize) -> Vec<Match> {
        if limit == 0 || self.live == 0 {
            return Vec::new();
        }
        let mut query: Vec<String> = crate::words::terms(context);
        query.sort_unstable();
        query.dedup();
        let need = min_hits.min(query.len()).max(1);
        let n = self.live as f32;
        let avg_len = (self.live_len / f64::from(self.live)).max(1.0) as f32;
        let mut score = vec![0.0f32; self.docs.len()];
        let mut hits = vec![0u16; self.docs.len()];
        let mut touched: Vec<u32> = Vec::new();
        for term in &query {
            let Some(&tid) = self.dictionary.get(term) else {
                continue;
            };
            let df = self.df[tid as usize] as f32;
            if df == 0.0 {
                continue;
            }
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for p in &self.postings[tid as usize] {
                let d = p.doc as usize;
                let doc = &self.docs[d];
                if !doc.live {
                    continue;
                }
                let norm = K1 * (1.0 - B + B * doc.len / avg_len);
                if hits[d] == 0 {
                    touched.push(p.doc);
                }
                hits[d] = hits[d].saturating_add(1);
                score[d] += idf * p.tf * (K1 + 1.0) / (p.tf + norm);
            }
        }
        // Keep the best `limit` in a min-heap ordered so the worst (lowest score, then highest
        // id) sits on top and is evicted first.
        let mut heap: BinaryHeap<std::cmp::Reverse<RankedKey<'_>>> = BinaryHeap::new();
        for &d in &touched {
            let di = d as usize;
            if usize::from(hits[di]) < need {
                continue;
            }
            let doc = &self.docs[di];
            let item = RankedKey {
                score: f64::from(score[di]) * f64::from(doc.weight),
                id: &doc.id,
                doc: d,
            };
            if heap.len() < limit {
                heap.push(std::cmp::Reverse(item));
            } else if let Some(worst) = heap.peek()
                && item > worst.0
            {
                heap.pop();
                heap.push(std::cmp::Reverse(item));
            }
        }
        let mut best: Vec<RankedKey<'_>> = heap.into_iter().map(|r| r.0).collect();
        best.sort_by(|a, b| b.cmp(a));
        best.into_iter()
            .map(|r| Match {
                id: r.id.clone(),
                score: r.score,
                hits: usize::from(hits[r.doc as usize]),
            })
            .collect()
    }
}

/// Ordering of candidates: higher score is greater; on equal scores the *smaller* id is greater,
/// so results list ties in ascending id order.
#[derive(Debug)]
struct RankedKey<'a> {
    score: f64,
    id: &'a LearningId,
    doc: u32,
}

impl PartialEq for RankedKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for RankedKey<'_> {}
impl PartialOrd for RankedKey<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for RankedKey<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.id.cmp(self.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    fn learning(id: &str, trigger: &str, solution: &str) -> Learning {
        Learning {
            id: LearningId::parse(id).unwrap(),
            created: None,
            source: None,
            trigger: trigger.into(),
            pattern: String::new(),
            solution: solution.into(),
            title: None,
            tags: Vec::new(),
            gates: None,
            target: None,
            status: Status::Active,
            approved_by: None,
            approved_at: None,
            effectiveness: None,
            extra: Default::default(),
            origin: None,
        }
    }

    #[test]
    fn two_distinct_terms_is_the_floor() {
        let mut ix = Index::default();
        ix.insert(&learning("a", "deploy timeout", "raise the timeout"), 1.0);
        ix.insert(&learning("b", "deploy", "deploy deploy deploy"), 1.0);
        let hits = ix.search("deploying build fails timeout", 10, 2);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id.as_str(), "a");
        assert_eq!(hits[0].hits, 2);
    }

    #[test]
    fn ties_are_ordered_by_id_and_removal_hides() {
        let mut ix = Index::default();
        for id in ["c", "a", "b"] {
            ix.insert(&learning(id, "cache miss storm", "warm the cache"), 1.0);
        }
        let ids: Vec<_> = ix
            .search("cache storm", 10, 2)
            .into_iter()
            .map(|m| m.id.to_string())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        ix.remove(&LearningId::parse("a").unwrap());
        assert_eq!(ix.search("cache storm", 1, 2)[0].id.as_str(), "b");
        assert_eq!(ix.len(), 2);
    }

    #[test]
    fn weight_reorders_equal_text() {
        let mut ix = Index::default();
        ix.insert(&learning("a", "cache miss storm", "warm"), 0.6);
        ix.insert(&learning("b", "cache miss storm", "warm"), 1.4);
        assert_eq!(ix.search("cache storm", 1, 2)[0].id.as_str(), "b");
        ix.set_weight(&LearningId::parse("b").unwrap(), 0.5);
        assert_eq!(ix.search("cache storm", 1, 2)[0].id.as_str(), "a");
    }

    #[test]
    fn rebuild_after_many_removals_keeps_results() {
        let mut ix = Index::default();
        for i in 0..3000 {
            ix.insert(
                &learning(&format!("l{i:05}"), "disk pressure alert", "prune segments"),
                1.0,
            );
        }
        for i in 0..2500 {
            ix.remove(&LearningId::parse(&format!("l{i:05}")).unwrap());
        }
        assert_eq!(ix.len(), 500);
        assert!(ix.docs.len() < 3000, "rebuild dropped dead slots");
        let hits = ix.search("disk pressure", 1000, 2);
        assert_eq!(hits.len(), 500);
        assert_eq!(hits[0].id.as_str(), "l02500");
    }
}
