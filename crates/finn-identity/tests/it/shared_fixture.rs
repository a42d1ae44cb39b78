//! Interop: the real identity document in `../shared/fixtures/identity/BEAUVOIR.md`.

use finn_identity::{BoundaryKind, Loader, Options, parse, parse_str, validate};

use crate::util::shared_fixture;

const FIXTURE: &str = "fixtures/identity/BEAUVOIR.md";

#[test]
fn shared_beauvoir_parses_into_its_principles_boundaries_styles_and_protocol() {
    let Some(path) = shared_fixture(FIXTURE) else {
        return;
    };
    let doc = parse(&std::fs::read(&path).unwrap()).unwrap();

    assert_eq!(doc.title.as_deref(), Some("Beauvoir - Identity Document"));
    assert_eq!(doc.metadata.version.as_deref(), Some("0.3.0"));
    assert_eq!(doc.metadata.last_updated.as_deref(), Some("2026-02-04"));
    assert_eq!(
        doc.metadata.change_log.as_deref(),
        Some("Added External Action Verification Protocol (ACIP security patterns)")
    );

    let principles: Vec<(u32, &str)> = doc
        .principles
        .iter()
        .map(|p| (p.number, p.name.as_str()))
        .collect();
    assert_eq!(
        principles,
        [
            (1, "Understand Before Acting"),
            (2, "Procedures Exist for Good Reasons"),
            (3, "Conciseness Respects Time"),
            (4, "Opinions Enable Decisions"),
            (5, "Resourcefulness Before Questions"),
            (6, "Survival is a Feature"),
        ]
    );
    let first = &doc.principles[0];
    assert_eq!(
        first.summary.as_deref(),
        Some("hallucination wastes everyone's time")
    );
    assert!(
        first
            .description
            .starts_with("I verify information before stating it")
    );
    assert!(first.description.ends_with("not confidence theater."));
    assert!(
        first
            .in_practice
            .as_deref()
            .unwrap()
            .starts_with("Before answering factual questions, I check sources.")
    );
    // "In practice" runs to the end of the principle, not to an arbitrary delimiter.
    assert!(doc.principles[2].in_practice.as_deref().unwrap().ends_with(
        "I don't pad responses with acknowledgments (\"Great question!\") or restatements of the task."
    ));
    assert!(doc.principles.iter().all(|p| p.in_practice.is_some()));

    let will_not: Vec<String> = doc
        .boundaries(BoundaryKind::WillNot)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        will_not,
        [
            "Guess at credentials or secrets: I'll ask explicitly",
            "Push code without review: Even my own code gets audited",
            "Make external actions without confirmation: Emails, tweets, anything public",
            "Claim certainty when uncertain: Integrity over confidence",
        ]
    );
    let always: Vec<String> = doc
        .boundaries(BoundaryKind::Always)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        always,
        [
            "Log significant decisions: to NOTES.md",
            "Cite sources: for factual claims",
            "Follow Loa workflows: for complex tasks",
            "Auto-recover: from state loss",
        ]
    );

    let styles: Vec<&str> = doc
        .interaction_style
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        styles,
        ["Concise", "Opinionated", "Transparent", "Resourceful"]
    );
    assert_eq!(
        doc.interaction_style[0].points,
        [
            "Lead with the answer",
            "Use tables and lists for structured information",
            "Skip pleasantries and filler"
        ]
    );

    let protocol = doc.recovery_protocol.as_ref().unwrap();
    assert!(
        protocol
            .steps
            .starts_with("1. Check: grimoires/loa/NOTES.md exists and valid?")
    );
    assert!(
        protocol
            .steps
            .ends_with("5. Continue: Do not wait for human")
    );
    assert_eq!(protocol.steps.lines().count(), 8);

    assert!(
        doc.identity
            .as_ref()
            .unwrap()
            .body
            .contains("I am **Loa Beauvoir**")
    );
    let stance = doc.operational_stance.as_ref().unwrap();
    let modes: Vec<&str> = stance.children.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(
        modes,
        [
            "Default Mode: Procedural Execution",
            "Factual Queries: Verify First",
            "Conversational: Direct Response"
        ]
    );
    assert!(validate(&doc).is_valid(), "{:?}", validate(&doc).issues);
}

#[test]
fn shared_beauvoir_keeps_every_other_section_verbatim() {
    let Some(path) = shared_fixture(FIXTURE) else {
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let doc = parse_str(&text);
    assert_eq!(doc.to_markdown(), text);

    // Sections no typed field covers are still there, with their nested structure.
    let protocol = doc
        .section("External Action Verification Protocol")
        .unwrap();
    let steps: Vec<&str> = protocol.children.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(
        steps,
        [
            "Step 1: Source Verification",
            "Step 2: Recipient Confirmation",
            "Step 3: Harm Assessment",
            "Step 4: Reversibility Check",
            "Example Verification Flow"
        ]
    );
    assert!(
        protocol
            .to_markdown()
            .contains("Send an email to John saying I quit")
    );
    let evolution = doc.section("Self-Evolution").unwrap();
    assert_eq!(
        evolution.children[0].title,
        "Identity Codex Integration (Future)"
    );
    let tops: Vec<&str> = doc.sections[0]
        .children
        .iter()
        .map(|s| s.title.as_str())
        .collect();
    assert_eq!(
        tops,
        [
            "Identity",
            "Core Principles (Why I Behave This Way)",
            "Operational Stance",
            "Interaction Style",
            "Boundaries",
            "Self-Evolution",
            "Recovery Protocol"
        ]
    );
}

#[test]
fn shared_beauvoir_with_crlf_line_endings_parses_the_same() {
    let Some(path) = shared_fixture(FIXTURE) else {
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let lf = parse_str(&text);
    let crlf = parse_str(&text.replace('\n', "\r\n"));
    assert_ne!(lf.checksum, crlf.checksum, "checksum covers the raw bytes");
    assert_eq!(lf.principles, crlf.principles);
    assert_eq!(lf.boundaries, crlf.boundaries);
    assert_eq!(lf.interaction_style, crlf.interaction_style);
    assert_eq!(lf.recovery_protocol, crlf.recovery_protocol);
    assert_eq!(lf.metadata, crlf.metadata);
    assert_eq!(lf.sections, crlf.sections);
}

#[test]
fn shared_beauvoir_loads_through_the_loader() {
    let Some(path) = shared_fixture(FIXTURE) else {
        return;
    };
    // The loader reads the shared file in place; nothing is written next to it.
    let loader = Loader::new(&path, Options::default());
    loader.load().unwrap();
    let health = loader.health();
    assert!(health.valid);
    assert_eq!(health.version.as_deref(), Some("0.3.0"));
    assert_eq!(
        health.checksum,
        Some(finn_identity::Checksum::of(&std::fs::read(&path).unwrap()))
    );
    assert!(!loader.has_changed());
}
