//! The NOTES.md change log: written only on real change, atomically, and bounded.

use finn_identity::{Checksum, Loader, Options, REGION_BEGIN, REGION_END};

use crate::util::valid_doc;

fn setup(
    max: usize,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    Options,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("BEAUVOIR.md");
    let notes = dir.path().join("NOTES.md");
    let options = Options {
        notes_path: Some(notes.clone()),
        change_log_max_entries: max,
        ..Options::default()
    };
    (dir, path, notes, options)
}

// §8.4-4: the NOTES log grew without bound through non-atomic appends.
#[test]
fn notes_log_is_bounded_to_the_newest_entries() {
    let (dir, path, notes, options) = setup(3);
    let user_notes = "# NOTES\n\n## Session 12\n\n- decided to keep the WAL\n";
    std::fs::write(&notes, user_notes).unwrap();
    let loader = Loader::new(&path, options);

    let mut checksums = Vec::new();
    for i in 0..10 {
        let text = valid_doc(&format!("1.0.{i}"));
        std::fs::write(&path, &text).unwrap();
        loader.load().unwrap();
        checksums.push(Checksum::of(text.as_bytes()));
    }
    let entries = loader.change_log().unwrap().entries().unwrap();
    assert_eq!(entries.len(), 3);
    let kept: Vec<_> = entries.iter().map(|e| e.checksum.unwrap()).collect();
    assert_eq!(kept, checksums[7..]);
    // Each entry links to the one before it, including across the dropped ones.
    assert_eq!(entries[0].previous, Some(checksums[6]));
    assert_eq!(entries[2].previous, Some(checksums[8]));
    assert_eq!(entries[2].version.as_deref(), Some("1.0.9"));

    let text = std::fs::read_to_string(&notes).unwrap();
    assert!(
        text.starts_with(user_notes),
        "the agent's own notes are untouched"
    );
    assert_eq!(text.matches(REGION_BEGIN).count(), 1);
    assert_eq!(text.matches(REGION_END).count(), 1);
    assert_eq!(text.matches("## [Identity Change] ").count(), 3);
    // No temp files are left next to the notes.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn notes_log_is_written_only_when_content_really_changes() {
    let (_dir, path, notes, options) = setup(10);
    std::fs::write(&path, valid_doc("1.0.0")).unwrap();
    let loader = Loader::new(&path, options.clone());
    loader.load().unwrap();
    let after_first = std::fs::read(&notes).unwrap();
    assert_eq!(loader.change_log().unwrap().entries().unwrap().len(), 1);
    assert_eq!(
        loader.change_log().unwrap().entries().unwrap()[0].previous,
        None
    );

    // Re-saving identical bytes (a touch, or an editor's save without edits) changes nothing.
    std::fs::write(&path, valid_doc("1.0.0")).unwrap();
    loader.load().unwrap();
    assert_eq!(std::fs::read(&notes).unwrap(), after_first);

    // A restart with unchanged content adds no entry either: the log remembers the checksum.
    let restarted = Loader::new(&path, options.clone());
    restarted.load().unwrap();
    assert_eq!(std::fs::read(&notes).unwrap(), after_first);

    // A change made while the agent was down is logged at the next start, linked to the last
    // recorded checksum.
    drop(restarted);
    std::fs::write(&path, valid_doc("1.1.0")).unwrap();
    let restarted = Loader::new(&path, options);
    restarted.load().unwrap();
    let entries = restarted.change_log().unwrap().entries().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].previous, entries[0].checksum);
    assert_eq!(entries[1].version.as_deref(), Some("1.1.0"));
}

#[test]
fn rejected_documents_are_not_logged() {
    let (_dir, path, notes, options) = setup(10);
    std::fs::write(&path, valid_doc("1.0.0")).unwrap();
    let loader = Loader::new(&path, options);
    loader.load().unwrap();
    let before = std::fs::read(&notes).unwrap();
    std::fs::write(&path, "garbage").unwrap();
    assert!(loader.load().is_err());
    assert_eq!(std::fs::read(&notes).unwrap(), before);
}

#[test]
fn agent_root_layout_uses_grimoires_loa() {
    let dir = tempfile::tempdir().unwrap();
    let loa = dir.path().join("grimoires/loa");
    std::fs::create_dir_all(&loa).unwrap();
    std::fs::write(loa.join("BEAUVOIR.md"), valid_doc("1.0.0")).unwrap();
    let loader = Loader::for_agent_root(dir.path(), Options::default());
    loader.load().unwrap();
    assert_eq!(loader.path(), loa.join("BEAUVOIR.md"));
    assert!(
        std::fs::read_to_string(loa.join("NOTES.md"))
            .unwrap()
            .contains("## [Identity Change] ")
    );
}
