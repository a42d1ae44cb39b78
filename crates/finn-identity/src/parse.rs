//! Markdown to [`IdentityDocument`]: one pulldown-cmark pass, an outline of the top-level headings,
//! then typed views read from the events of the sections they belong to.
//!
//! Working from parser events rather than regexes over lines is what makes the grammar robust: a
//! `#` inside a paragraph is text, a fenced block's content is never mistaken for structure, a body
//! may follow its heading without a blank line, and a thematic break (`---`) ends nothing.

use std::borrow::Cow;
use std::ops::Range;

use pulldown_cmark::{CodeBlockKind, Event, Options as MdOptions, Parser, Tag, TagEnd};

use crate::checksum::Checksum;
use crate::document::{
    Boundaries, BoundaryItem, IdentityDocument, Metadata, Principle, RecoveryProtocol, Section,
    StyleEntry,
};
use crate::error::ParseError;

type Spanned<'a> = (Event<'a>, Range<usize>);

/// Parses raw file bytes. Fails only when they are not UTF-8; any UTF-8 text yields a document.
///
/// The checksum is taken over `bytes` exactly as given.
///
/// ```
/// let doc = finn_identity::parse(b"## Core Principles\n### 1. Be kind\nAlways.\n")?;
/// assert_eq!(doc.principles[0].name, "Be kind");
/// assert!(finn_identity::parse(&[0xff, 0xfe]).is_err());
/// # Ok::<(), finn_identity::ParseError>(())
/// ```
pub fn parse(bytes: &[u8]) -> Result<IdentityDocument, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8 {
        valid_up_to: e.valid_up_to(),
    })?;
    Ok(parse_text(text, Checksum::of(bytes)))
}

/// Parses text. Never fails and never panics; absent sections leave their fields empty.
pub fn parse_str(text: &str) -> IdentityDocument {
    parse_text(text, Checksum::of(text.as_bytes()))
}

/// The form used to compare section titles: curly apostrophes made straight, lowercase, leading
/// symbols (emoji, bullets) and a trailing colon dropped, whitespace collapsed.
pub(crate) fn normalize_title(title: &str) -> String {
    let straightened: String = title
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{02BC}' | '\u{2032}' | '`' => '\'',
            other => other,
        })
        .collect();
    let trimmed = straightened
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .trim_end()
        .trim_end_matches(':');
    collapse_whitespace(&trimmed.to_lowercase())
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Strips a byte-order mark and turns CRLF and lone CR into LF, borrowing when there is nothing to do.
fn normalize_source(raw: &str) -> Cow<'_, str> {
    let raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
    if raw.contains('\r') {
        Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        Cow::Borrowed(raw)
    }
}

fn markdown_options() -> MdOptions {
    MdOptions::ENABLE_TABLES | MdOptions::ENABLE_STRIKETHROUGH | MdOptions::ENABLE_TASKLISTS
}

/// A top-level heading and the extent of its section.
struct Flat {
    level: u8,
    title: String,
    /// Source range of the heading itself.
    heading: Range<usize>,
    /// Source range of the body: heading end to the next top-level heading.
    body: Range<usize>,
    /// Index range into the event list for the body.
    events: Range<usize>,
    children: Vec<usize>,
    /// Source end of this section including all nested sections.
    subtree_end: usize,
    /// Event end of this section including all nested sections.
    subtree_events_end: usize,
}

struct Outline<'t, 'e> {
    text: &'t str,
    events: &'e [Spanned<'t>],
    flats: Vec<Flat>,
    roots: Vec<usize>,
    preamble_end: usize,
}

impl<'t> Outline<'t, '_> {
    fn slice(&self, range: Range<usize>) -> &'t str {
        self.text.get(range).unwrap_or("")
    }

    fn body_events(&self, i: usize) -> &[Spanned<'t>] {
        self.events.get(self.flats[i].events.clone()).unwrap_or(&[])
    }

    fn subtree_events(&self, i: usize) -> &[Spanned<'t>] {
        let f = &self.flats[i];
        self.events
            .get(f.events.start..f.subtree_events_end)
            .unwrap_or(&[])
    }

    /// First section at level 1 or 2 whose normalized title satisfies `pred`.
    fn find_major(&self, pred: impl Fn(&str) -> bool) -> Option<usize> {
        self.flats
            .iter()
            .position(|f| f.level <= 2 && pred(&normalize_title(&f.title)))
    }

    fn to_section(&self, i: usize) -> Section {
        let f = &self.flats[i];
        Section {
            level: f.level,
            title: f.title.clone(),
            heading: self.slice(f.heading.clone()).to_owned(),
            body: self.slice(f.body.clone()).to_owned(),
            children: f.children.iter().map(|&c| self.to_section(c)).collect(),
        }
    }
}

fn parse_text(raw: &str, checksum: Checksum) -> IdentityDocument {
    let text = normalize_source(raw);
    let text: &str = &text;
    let events: Vec<Spanned<'_>> = Parser::new_ext(text, markdown_options())
        .into_offset_iter()
        .collect();
    let outline = build_outline(text, &events);

    let title = outline
        .flats
        .iter()
        .find(|f| f.level == 1)
        .map(|f| f.title.clone());
    let identity = outline
        .find_major(|t| t == "identity")
        .map(|i| outline.to_section(i));
    let operational_stance = outline
        .find_major(|t| t.starts_with("operational stance"))
        .map(|i| outline.to_section(i));
    let principles = outline
        .find_major(|t| t.starts_with("core principles") || t == "principles")
        .map(|i| principles(&outline, i))
        .unwrap_or_default();
    let interaction_style = outline
        .find_major(|t| t.starts_with("interaction style"))
        .map(|i| style_entries(&outline, i))
        .unwrap_or_default();
    let recovery_protocol = outline
        .find_major(|t| t.starts_with("recovery protocol"))
        .and_then(|i| first_code_block(outline.subtree_events(i)));

    IdentityDocument {
        checksum,
        title,
        metadata: metadata(text, &events),
        identity,
        principles,
        boundaries: boundaries(&outline),
        operational_stance,
        interaction_style,
        recovery_protocol,
        preamble: outline.slice(0..outline.preamble_end).to_owned(),
        sections: outline
            .roots
            .iter()
            .map(|&r| outline.to_section(r))
            .collect(),
    }
}

fn build_outline<'t, 'e>(text: &'t str, events: &'e [Spanned<'t>]) -> Outline<'t, 'e> {
    // Pass 1: top-level headings (those outside any container such as a block quote or list).
    struct Head {
        level: u8,
        title: String,
        range: Range<usize>,
        first_event: usize,
        after_event: usize,
    }
    let mut heads: Vec<Head> = Vec::new();
    let mut depth = 0usize;
    let mut open: Option<(u8, Range<usize>, usize, String)> = None;
    let mut cursor = 0usize;
    for (idx, (event, range)) in events.iter().enumerate() {
        match event {
            Event::Start(Tag::Heading { level, .. }) if depth == 0 => {
                open = Some((*level as u8, range.clone(), idx, String::new()));
                depth += 1;
            }
            Event::Start(_) => depth += 1,
            Event::End(TagEnd::Heading(_)) if depth == 1 => {
                depth = 0;
                if let Some((level, range, first_event, title)) = open.take() {
                    // A heading whose range is out of order or not on char boundaries stays part of
                    // the surrounding body; the outline must partition the text exactly.
                    if range.start >= cursor
                        && range.end >= range.start
                        && text.get(range.clone()).is_some()
                    {
                        cursor = range.end;
                        heads.push(Head {
                            level,
                            title: collapse_whitespace(&title),
                            range,
                            first_event,
                            after_event: idx + 1,
                        });
                    }
                }
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) | Event::Code(t) => {
                if let Some((.., title)) = open.as_mut() {
                    title.push_str(t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some((.., title)) = open.as_mut() {
                    title.push(' ');
                }
            }
            _ => {}
        }
    }

    // Pass 2: bodies run to the next top-level heading.
    let mut flats: Vec<Flat> = Vec::with_capacity(heads.len());
    for (i, head) in heads.iter().enumerate() {
        let (next_start, next_event) = heads.get(i + 1).map_or((text.len(), events.len()), |n| {
            (n.range.start, n.first_event)
        });
        flats.push(Flat {
            level: head.level,
            title: head.title.clone(),
            heading: head.range.clone(),
            body: head.range.end..next_start,
            events: head.after_event..next_event,
            children: Vec::new(),
            subtree_end: next_start,
            subtree_events_end: next_event,
        });
    }

    // Pass 3: nest by level.
    let mut roots = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    for i in 0..flats.len() {
        while let Some(&top) = stack.last() {
            if flats[top].level >= flats[i].level {
                stack.pop();
            } else {
                break;
            }
        }
        match stack.last() {
            Some(&parent) => flats[parent].children.push(i),
            None => roots.push(i),
        }
        stack.push(i);
    }
    // Subtree extents: a section ends where its last descendant ends.
    for i in (0..flats.len()).rev() {
        if let Some(&last) = flats[i].children.last() {
            flats[i].subtree_end = flats[last].subtree_end;
            flats[i].subtree_events_end = flats[last].subtree_events_end;
        }
    }

    Outline {
        text,
        events,
        preamble_end: flats.first().map_or(text.len(), |f| f.heading.start),
        flats,
        roots,
    }
}

/// Plain text of inline events: text and code spans, breaks as spaces, whitespace collapsed.
fn plain_text(events: &[Spanned<'_>]) -> String {
    let mut out = String::new();
    for (event, _) in events {
        match event {
            Event::Text(t) | Event::Code(t) => out.push_str(t),
            Event::SoftBreak | Event::HardBreak => out.push(' '),
            _ => {}
        }
    }
    collapse_whitespace(&out)
}

/// Index of the `End` matching the `Start` at `start` (or the slice length if unbalanced).
fn matching_end(events: &[Spanned<'_>], start: usize) -> usize {
    let mut depth = 0usize;
    for (i, (event, _)) in events.iter().enumerate().skip(start) {
        match event {
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    events.len()
}

/// Trims, then drops every line's leading indentation after the first (list continuation lines).
fn tidy_block(s: &str) -> String {
    let s = s.trim();
    let mut lines = s.lines();
    let mut out = lines.next().unwrap_or("").to_owned();
    for line in lines {
        out.push('\n');
        out.push_str(line.trim_start());
    }
    out
}

fn metadata(text: &str, events: &[Spanned<'_>]) -> Metadata {
    let mut meta = Metadata::default();
    let mut i = 0;
    while i < events.len() {
        if let (Event::Start(Tag::Strong), strong_range) = &events[i] {
            let end = matching_end(events, i);
            let raw_key = plain_text(events.get(i + 1..end).unwrap_or(&[]));
            let key_has_colon = raw_key.trim_end().ends_with(':');
            let key = normalize_title(&raw_key);
            let slot = match key.as_str() {
                "version" => Some(&mut meta.version),
                "last updated" => Some(&mut meta.last_updated),
                "change log" | "changelog" => Some(&mut meta.change_log),
                _ => None,
            };
            if let Some(slot) = slot.filter(|s| s.is_none()) {
                // The value is the rest of the line: up to the next break or block end.
                let mut value_end = strong_range.end;
                for (event, range) in events.iter().skip(end + 1) {
                    match event {
                        Event::SoftBreak | Event::HardBreak => break,
                        Event::End(
                            TagEnd::Emphasis
                            | TagEnd::Strong
                            | TagEnd::Strikethrough
                            | TagEnd::Link
                            | TagEnd::Image
                            | TagEnd::Superscript
                            | TagEnd::Subscript,
                        ) => {}
                        Event::End(_) | Event::Start(Tag::List(_) | Tag::Item) => break,
                        _ => value_end = value_end.max(range.end),
                    }
                }
                let raw_value = text.get(strong_range.end..value_end).unwrap_or("");
                let value_has_colon = raw_value.trim_start().starts_with(':');
                let value = raw_value.trim().trim_start_matches(':').trim();
                if (key_has_colon || value_has_colon) && !value.is_empty() {
                    *slot = Some(value.to_owned());
                }
            }
            i = end;
        }
        i += 1;
    }
    meta
}

/// `1. Name`, `1) Name`, `1: Name`, `1 - Name`, `Principle 1: Name` → (1, "Name").
fn numbered_title(title: &str) -> Option<(u32, String)> {
    let t = title.trim();
    let t = match t.get(..9) {
        Some(p) if p.eq_ignore_ascii_case("principle") => t[9..].trim_start(),
        _ => t,
    };
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return None;
    }
    let number = t[..digits].parse::<u32>().ok()?;
    let rest = &t[digits..];
    if !rest.starts_with(|c: char| c.is_whitespace() || ".):-\u{2013}\u{2014}".contains(c)) {
        return None;
    }
    let name = rest
        .trim_start_matches(|c: char| c.is_whitespace() || ".):-\u{2013}\u{2014}".contains(c))
        .trim();
    (!name.is_empty()).then(|| (number, name.to_owned()))
}

fn principles(outline: &Outline<'_, '_>, section: usize) -> Vec<Principle> {
    outline.flats[section]
        .children
        .iter()
        .filter_map(|&child| {
            let (number, name) = numbered_title(&outline.flats[child].title)?;
            Some(principle(outline, child, number, name))
        })
        .collect()
}

fn principle(outline: &Outline<'_, '_>, i: usize, number: u32, name: String) -> Principle {
    let flat = &outline.flats[i];
    let events = outline.subtree_events(i);
    let (body_start, body_end) = (flat.body.start, flat.subtree_end);

    // Find the line that opens with "In practice": the start of a paragraph, or a line inside
    // one (a template that puts it directly under the description has no blank line between).
    let mut marker: Option<(usize, usize)> = None; // (description end, text after the marker)
    let mut depth = 0usize;
    let mut line_start = false;
    for (idx, (event, range)) in events.iter().enumerate() {
        if std::mem::take(&mut line_start)
            && let Some(after) = in_practice_marker(outline.text, events, idx)
        {
            marker = Some((range.start, after));
            break;
        }
        match event {
            Event::Start(Tag::Paragraph) if depth == 0 => {
                depth += 1;
                line_start = true;
            }
            Event::SoftBreak | Event::HardBreak if depth == 1 => line_start = true,
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }

    let description_end = marker.map_or(body_end, |(p, _)| p);
    let description = outline.slice(body_start..description_end).trim().to_owned();
    let in_practice = marker
        .map(|(_, after)| {
            outline
                .slice(after..body_end)
                .trim()
                .trim_start_matches(':')
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty());

    // The TypeScript loader's `description` was the first bold span; keep it as the summary.
    let summary = events
        .iter()
        .enumerate()
        .take_while(|(_, (_, r))| r.start < description_end)
        .find(|(_, (e, _))| matches!(e, Event::Start(Tag::Strong)))
        .map(|(idx, _)| {
            plain_text(
                events
                    .get(idx + 1..matching_end(events, idx))
                    .unwrap_or(&[]),
            )
        })
        .filter(|s| !s.is_empty());

    Principle {
        number,
        name,
        description,
        summary,
        in_practice,
    }
}

/// If the line whose first inline event is `events[at]` opens with `**In practice**` (bold,
/// italic or plain, colon inside or outside), the source offset just after the marker.
fn in_practice_marker(text: &str, events: &[Spanned<'_>], at: usize) -> Option<usize> {
    let (first, first_range) = events.get(at)?;
    match first {
        Event::Start(Tag::Strong | Tag::Emphasis) => {
            let end = matching_end(events, at);
            let label = plain_text(events.get(at + 1..end)?);
            (normalize_title(&label) == "in practice").then_some(first_range.end)
        }
        Event::Text(_) => {
            let rest = text.get(first_range.start..)?;
            let head = rest.get(..12)?;
            head.eq_ignore_ascii_case("in practice:")
                .then_some(first_range.start + 12)
        }
        _ => None,
    }
}

fn boundaries(outline: &Outline<'_, '_>) -> Boundaries {
    let mut b = Boundaries::default();
    for (i, flat) in outline.flats.iter().enumerate() {
        let list = match normalize_title(&flat.title).as_str() {
            "what i won't do" | "what i will not do" | "what i wont do" => &mut b.will_not,
            "what i always do" => &mut b.always,
            _ => continue,
        };
        list.extend(
            list_items(outline.body_events(i))
                .into_iter()
                .map(|item| boundary_item(outline.text, item)),
        );
    }
    b
}

/// The event slices of the items of lists that sit directly in `events` (not nested ones).
fn list_items<'s, 't>(events: &'s [Spanned<'t>]) -> Vec<&'s [Spanned<'t>]> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < events.len() {
        match &events[i].0 {
            Event::Start(Tag::Item) if depth == 1 => {
                let end = matching_end(events, i);
                items.push(events.get(i..=end).unwrap_or(&events[i..]));
                i = end + 1;
                continue;
            }
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    items
}

fn boundary_item(text: &str, item: &[Spanned<'_>]) -> BoundaryItem {
    let item_end = item.first().map_or(0, |(_, r)| r.end);
    let mut k = 1;
    while matches!(
        item.get(k),
        Some((Event::Start(Tag::Paragraph) | Event::TaskListMarker(_), _))
    ) {
        k += 1;
    }
    if let Some((Event::Start(Tag::Strong), strong)) = item.get(k) {
        let end = matching_end(item, k);
        let title = plain_text(item.get(k + 1..end).unwrap_or(&[]));
        let rest = text.get(strong.end..item_end).unwrap_or("").trim_start();
        let rest = rest
            .strip_prefix(['-', '\u{2013}', '\u{2014}', ':'])
            .unwrap_or(rest);
        let description = tidy_block(rest);
        return BoundaryItem {
            title: title.trim_end_matches(':').trim().to_owned(),
            description: (!description.is_empty()).then_some(description),
        };
    }
    BoundaryItem {
        title: first_block_text(item),
        description: None,
    }
}

/// Plain text of an item's first block: its inline content up to a nested list or second paragraph.
fn first_block_text(item: &[Spanned<'_>]) -> String {
    let mut depth = 0usize;
    let mut inline: Vec<Spanned<'_>> = Vec::new();
    for (event, range) in item.iter().skip(1) {
        match event {
            Event::Start(Tag::List(_) | Tag::CodeBlock(_) | Tag::BlockQuote(_)) => break,
            Event::End(TagEnd::Paragraph) if depth == 1 => break,
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => inline.push((event.clone(), range.clone())),
        }
    }
    plain_text(&inline)
}

fn style_entries(outline: &Outline<'_, '_>, section: usize) -> Vec<StyleEntry> {
    outline.flats[section]
        .children
        .iter()
        .map(|&c| {
            let flat = &outline.flats[c];
            StyleEntry {
                name: flat.title.clone(),
                points: list_items(outline.body_events(c))
                    .into_iter()
                    .map(first_block_text)
                    .collect(),
                body: outline
                    .slice(flat.body.start..flat.subtree_end)
                    .trim()
                    .to_owned(),
            }
        })
        .collect()
}

fn first_code_block(events: &[Spanned<'_>]) -> Option<RecoveryProtocol> {
    let start = events
        .iter()
        .position(|(e, _)| matches!(e, Event::Start(Tag::CodeBlock(_))))?;
    let language = match &events[start].0 {
        Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
            info.split_whitespace().next().map(str::to_owned)
        }
        _ => None,
    };
    let end = matching_end(events, start);
    let mut steps = String::new();
    for (event, _) in events.get(start + 1..end).unwrap_or(&[]) {
        if let Event::Text(t) = event {
            steps.push_str(t);
        }
    }
    let steps = steps.trim_start_matches('\n').trim_end().to_owned();
    Some(RecoveryProtocol { steps, language })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_titles() {
        assert_eq!(numbered_title("1. Be kind"), Some((1, "Be kind".into())));
        assert_eq!(numbered_title("2) Be kind"), Some((2, "Be kind".into())));
        assert_eq!(
            numbered_title("Principle 3: Be kind"),
            Some((3, "Be kind".into()))
        );
        assert_eq!(
            numbered_title("4 \u{2014} Be kind"),
            Some((4, "Be kind".into()))
        );
        assert_eq!(numbered_title("Be kind"), None);
        assert_eq!(numbered_title("5."), None);
        assert_eq!(numbered_title("12abc"), None);
        assert_eq!(numbered_title("99999999999999999999. Overflow"), None);
    }

    #[test]
    fn title_normalization_equates_apostrophes_and_case() {
        assert_eq!(normalize_title("What I Won\u{2019}t Do"), "what i won't do");
        assert_eq!(normalize_title("  What   I Won't Do: "), "what i won't do");
        assert_eq!(normalize_title("\u{1F9ED} Identity"), "identity");
    }

    #[test]
    fn outline_partitions_the_text_exactly() {
        let text = "intro\n# A\nbody a\n## B\nbody b\n\n### C\n> # quoted heading\n## D\ntail";
        let doc = parse_str(text);
        assert_eq!(doc.to_markdown(), text);
        assert_eq!(doc.preamble, "intro\n");
        assert_eq!(doc.sections.len(), 1);
        let a = &doc.sections[0];
        assert_eq!(a.title, "A");
        assert_eq!(
            a.children
                .iter()
                .map(|s| s.title.as_str())
                .collect::<Vec<_>>(),
            ["B", "D"]
        );
        assert_eq!(a.children[0].children[0].title, "C");
        // A heading inside a block quote is body text of its section, not structure.
        assert!(a.children[0].children[0].body.contains("# quoted heading"));
    }

    #[test]
    fn setext_headings_and_crlf() {
        let text = "Title\r\n=====\r\n\r\n## Interaction Style\r\n### Calm\r\n- slow\r\n";
        let doc = parse_str(text);
        assert_eq!(doc.title.as_deref(), Some("Title"));
        assert_eq!(doc.interaction_style[0].name, "Calm");
        assert_eq!(doc.interaction_style[0].points, ["slow"]);
        assert_eq!(doc.to_markdown(), text.replace("\r\n", "\n"));
    }

    #[test]
    fn metadata_requires_a_colon_and_keeps_the_first_value() {
        let doc = parse_str(
            "> **Version**: 1.2.3\n> **Last Updated:** 2026-01-01\n\nThe **version** matters.\n**Version**: 9\n",
        );
        assert_eq!(doc.metadata.version.as_deref(), Some("1.2.3"));
        assert_eq!(doc.metadata.last_updated.as_deref(), Some("2026-01-01"));
        assert_eq!(doc.metadata.change_log, None);
    }

    #[test]
    fn boundary_items_with_and_without_bold_leads() {
        let doc = parse_str(
            "### What I Always Do\n\n- **Cite** \u{2013} sources\n- **Log:** decisions\n- plain item\n  continued\n- [ ] **Task** done\n",
        );
        let items: Vec<String> = doc
            .boundaries
            .always
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            items,
            [
                "Cite: sources",
                "Log: decisions",
                "plain item continued",
                "Task: done"
            ]
        );
    }

    #[test]
    fn recovery_protocol_takes_the_first_code_block_even_in_a_subsection() {
        let doc = parse_str(
            "## Recovery Protocol\n\nintro\n\n### Steps\n\n```text\n\n1. restore\n2. go on\n\n```\n\n```\nsecond\n```\n",
        );
        let p = doc.recovery_protocol.unwrap();
        assert_eq!(p.steps, "1. restore\n2. go on");
        assert_eq!(p.language.as_deref(), Some("text"));
    }
}
