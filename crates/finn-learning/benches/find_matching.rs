//! `find_matching` over 100,000 active learnings, next to the anchors' linear scan (substring
//! hits over every learning) measured in the same run.
//!
//! Target: ≤ 5 ms per query for `find_matching`. Texts are synthetic: words drawn from a
//! 6,000-word vocabulary with a Zipf-like distribution, so common words have long posting lists
//! as they would in real prose.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use finn_learning::{LearningStore, NewLearning, Source, StoreOptions, Target, Thresholds};

const LEARNINGS: usize = 100_000;
const VOCABULARY: usize = 6_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Zipf-like: rank r with probability ~ 1/r, by inverse transform on a log scale.
    fn word(&mut self) -> String {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        let rank = ((VOCABULARY as f64).powf(u) as usize).min(VOCABULARY - 1);
        // Pronounceable, distinct words: base-20 syllables.
        let syll = [
            "ka", "lo", "mi", "ne", "ru", "ta", "vo", "xi", "po", "se", "du", "fa", "gi", "ho",
            "ju", "be", "co", "ze", "wa", "ye",
        ];
        let mut r = rank + 20;
        let mut w = String::new();
        while r > 0 {
            w.push_str(syll[r % 20]);
            r /= 20;
        }
        w
    }
    fn text(&mut self, words: usize) -> String {
        (0..words)
            .map(|_| self.word())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The anchors' `findMatchingLearnings`: words of trigger + pattern longer than 3 characters
/// that are substrings of the lower-cased context; a match needs 2 hits. Lower-casing of the
/// stored texts is done once up front, which favours the baseline.
fn anchors_scan<'a>(corpus: &'a [(String, Vec<String>)], context: &str) -> Vec<&'a str> {
    let ctx = context.to_lowercase();
    corpus
        .iter()
        .filter(|(_, words)| {
            words
                .iter()
                .filter(|w| w.chars().count() > 3 && ctx.contains(w.as_str()))
                .count()
                >= 2
        })
        .map(|(id, _)| id.as_str())
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = StoreOptions {
        durability: finn_wal::Durability::None,
        thresholds: Thresholds {
            discovery_depth: 0,
            reusability: 0,
            trigger_clarity: 0,
            verification: 0,
            total: 0,
        },
        ..StoreOptions::default()
    };
    let (store, _) = LearningStore::open(dir.path(), options).expect("store opens");
    let mut rng = Rng(42);
    for _ in 0..LEARNINGS {
        let new = NewLearning::new(
            Source::Sprint,
            Target::Openclaw,
            rng.text(10),
            rng.text(25),
            rng.text(25),
        );
        store.add(new).expect("add");
    }
    let corpus: Vec<(String, Vec<String>)> = store
        .list(None)
        .into_iter()
        .map(|l| {
            let words = format!("{} {}", l.trigger, l.pattern)
                .to_lowercase()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            (l.id.to_string(), words)
        })
        .collect();
    let queries: Vec<String> = (0..64).map(|_| rng.text(12)).collect();

    let mut group = c.benchmark_group("find_matching_100k");
    group.sample_size(20);
    let mut i = 0;
    group.bench_function("finn_bm25_index_top10", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(store.find_matching(black_box(&queries[i]), 10))
        })
    });
    let mut j = 0;
    group.bench_function("anchors_linear_substring_scan", |b| {
        b.iter(|| {
            j = (j + 1) % queries.len();
            black_box(anchors_scan(&corpus, black_box(&queries[j])))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
