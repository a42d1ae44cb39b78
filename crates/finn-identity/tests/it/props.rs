//! Property tests: the parser never panics and never loses a byte.

use proptest::prelude::*;

fn normalized(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Markdown built from the constructs the parser interprets, in any order and combination.
fn markdown() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("# BEAUVOIR\n".to_owned()),
        Just("## Core Principles\n".to_owned()),
        Just("## Boundaries\n".to_owned()),
        Just("## Interaction Style\n".to_owned()),
        Just("## Recovery Protocol\n".to_owned()),
        Just("### What I Won\u{2019}t Do\n".to_owned()),
        Just("### What I Always Do\n".to_owned()),
        Just("**In practice**: do it\n".to_owned()),
        Just("> **Version**: 1.0.0\n".to_owned()),
        Just("**Last Updated:**\n".to_owned()),
        Just("```\n".to_owned()),
        Just("~~~rust\n".to_owned()),
        Just("---\n".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\r".to_owned()),
        Just("> ".to_owned()),
        Just("    indented\n".to_owned()),
        Just("| a | b |\n|---|---|\n".to_owned()),
        Just("- [ ] **task** \u{2013} x\n".to_owned()),
        Just("***\n".to_owned()),
        Just("====\n".to_owned()),
        Just("<!-- html -->\n".to_owned()),
        (1u32..20, "[a-zA-Z#' ]{0,12}").prop_map(|(n, s)| format!("### {n}. {s}\n")),
        (1usize..7, "[^\n]{0,16}").prop_map(|(n, s)| format!("{} {s}\n", "#".repeat(n))),
        "[-*+] \\*\\*[a-z]{0,8}\\*\\*[ -][a-z ]{0,10}\n",
        "[0-9]{1,3}[.)] [^\n]{0,12}\n",
        "[^\n]{0,24}\n",
        "[ \t]{0,6}",
    ];
    prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(doc) = finn_identity::parse(&bytes) {
            let text = std::str::from_utf8(&bytes).unwrap();
            prop_assert_eq!(doc.to_markdown(), normalized(text));
            let _ = finn_identity::validate(&doc);
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_roundtrips(text in "\\PC{0,512}") {
        let doc = finn_identity::parse_str(&text);
        prop_assert_eq!(doc.to_markdown(), normalized(&text));
    }

    #[test]
    fn arbitrary_markdown_never_panics_and_roundtrips(text in markdown()) {
        let doc = finn_identity::parse_str(&text);
        prop_assert_eq!(doc.to_markdown(), normalized(&text));
        let _ = finn_identity::validate(&doc);
        for p in &doc.principles {
            prop_assert!(!p.name.is_empty());
        }
    }
}
