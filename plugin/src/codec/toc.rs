//! A table of contents (`GstToc`, the TOC event's) across the transport: its scope,
//! tags and entry tree, in a strict encoding of ours (GStreamer has no text form for
//! a TOC). A consumer rebuilds it only from what checks: known entry and loop types,
//! a uid for every entry, tags that parse, the tree at most [`MAX_DEPTH`] deep and
//! [`MAX_ENTRIES`] entries in all.

use gst::glib;

use super::bytes::{Reader, Writer};
use super::fault::Fault;
use super::text::tags as parse_tags;

/// Deepest entry tree a consumer rebuilds.
pub const MAX_DEPTH: usize = 8;
/// Most entries of one TOC.
pub const MAX_ENTRIES: usize = 4096;

/// Encodes `toc` and the TOC event's `updated` flag.
pub fn encode(toc: &gst::TocRef, updated: bool) -> Vec<u8> {
    let mut w = Writer::new();
    w.u8(match toc.scope() {
        gst::TocScope::Global => 1,
        _ => 2,
    });
    w.u8(updated as u8);
    w.text(&toc.tags().map(|t| t.to_string()).unwrap_or_default());
    let entries = toc.entries();
    w.u16(entries.len().min(MAX_ENTRIES) as u16);
    for e in entries.iter().take(MAX_ENTRIES) {
        entry(&mut w, e);
    }
    w.into_bytes()
}

fn entry(w: &mut Writer, e: &gst::TocEntryRef) {
    use glib::translate::IntoGlib;
    w.i32(e.entry_type().into_glib());
    w.text(e.uid());
    let (start, stop) = e.start_stop_times().unwrap_or((-1, -1));
    w.u64(start as u64);
    w.u64(stop as u64);
    let (lt, repeat) = e.loop_().unwrap_or((gst::TocLoopType::None, 0));
    w.i32(lt.into_glib());
    w.i32(repeat);
    w.text(&e.tags().map(|t| t.to_string()).unwrap_or_default());
    let subs = e.sub_entries();
    w.u16(subs.len().min(MAX_ENTRIES) as u16);
    for s in subs.iter().take(MAX_ENTRIES) {
        entry(w, s);
    }
}

/// Decodes a TOC a producer sent, and its `updated` flag.
pub fn decode(b: &[u8]) -> Result<(gst::Toc, bool), Fault> {
    let what = "TOC";
    let mut r = Reader::new(b, what);
    let scope = match r.u8()? {
        1 => gst::TocScope::Global,
        2 => gst::TocScope::Current,
        s => {
            return Err(Fault::Value {
                what,
                field: "scope",
                value: s.into(),
            });
        }
    };
    let updated = r.flag("updated flag")?;
    let mut toc = gst::Toc::new(scope);
    let tags = tags(&mut r)?;
    let mut count = 0usize;
    let n = r.u16()? as usize;
    let mut entries = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        entries.push(decode_entry(&mut r, 1, &mut count)?);
    }
    r.done()?;
    {
        let t = toc.get_mut().expect("new");
        t.set_tags(tags);
        for e in entries {
            t.append_entry(e);
        }
    }
    Ok((toc, updated))
}

fn tags(r: &mut Reader<'_>) -> Result<Option<gst::TagList>, Fault> {
    let s = r.text()?;
    if s.is_empty() {
        return Ok(None);
    }
    parse_tags(s, "TOC tags").map(Some)
}

fn decode_entry(
    r: &mut Reader<'_>,
    depth: usize,
    count: &mut usize,
) -> Result<gst::TocEntry, Fault> {
    use glib::translate::FromGlib;
    let what = "TOC entry";
    if depth > MAX_DEPTH {
        return Err(Fault::Limit {
            what: "TOC",
            field: "levels of entries",
            value: depth as u64,
            limit: MAX_DEPTH as u64,
        });
    }
    *count += 1;
    if *count > MAX_ENTRIES {
        return Err(Fault::Limit {
            what: "TOC",
            field: "entries",
            value: *count as u64,
            limit: MAX_ENTRIES as u64,
        });
    }
    let ty = r.i32()?;
    if !(-3..=3).contains(&ty) || ty == 0 {
        return Err(Fault::Value {
            what,
            field: "type",
            value: ty.into(),
        });
    }
    // SAFETY: `ty` is one of GstTocEntryType's values (checked just above).
    let ty = unsafe { gst::TocEntryType::from_glib(ty) };
    let uid = r.text()?;
    if uid.is_empty() {
        return Err(Fault::Missing { what, field: "uid" });
    }
    let start = r.u64()? as i64;
    let stop = r.u64()? as i64;
    let lt = r.i32()?;
    if !(0..=3).contains(&lt) {
        return Err(Fault::Value {
            what,
            field: "loop type",
            value: lt.into(),
        });
    }
    // SAFETY: `lt` is one of GstTocLoopType's values (checked just above).
    let lt = unsafe { gst::TocLoopType::from_glib(lt) };
    let repeat = r.i32()?;
    let tags = tags(r)?;
    let n = r.u16()? as usize;
    let mut e = gst::TocEntry::new(ty, uid);
    {
        let m = e.get_mut().expect("new");
        m.set_start_stop_times(start, stop);
        m.set_loop(lt, repeat);
        m.set_tags(tags);
    }
    for _ in 0..n {
        let s = decode_entry(r, depth + 1, count)?;
        e.get_mut().expect("new").append_sub_entry(s);
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chapters() -> gst::Toc {
        gst::init().unwrap();
        let mut toc = gst::Toc::new(gst::TocScope::Global);
        let mut edition = gst::TocEntry::new(gst::TocEntryType::Edition, "ed");
        for i in 0..3i64 {
            let mut c = gst::TocEntry::new(gst::TocEntryType::Chapter, &format!("ch{i}"));
            let mut tags = gst::TagList::new();
            tags.get_mut().unwrap().add::<gst::tags::Title>(
                &format!("Chapter {i}").as_str(),
                gst::TagMergeMode::Append,
            );
            let c_ = c.get_mut().unwrap();
            c_.set_start_stop_times(i * 1_000_000_000, (i + 1) * 1_000_000_000);
            c_.set_tags(tags);
            edition.get_mut().unwrap().append_sub_entry(c);
        }
        toc.get_mut().unwrap().append_entry(edition);
        toc
    }

    #[test]
    fn a_chapter_tree_round_trips() {
        let toc = chapters();
        let (back, updated) = decode(&encode(&toc, true)).unwrap();
        assert!(updated);
        assert_eq!(encode(&back, true), encode(&toc, true));
        let ed = &back.entries()[0];
        assert_eq!(ed.sub_entries().len(), 3);
        assert_eq!(
            ed.sub_entries()[2].start_stop_times(),
            Some((2_000_000_000, 3_000_000_000))
        );
    }

    #[test]
    fn lying_tocs_are_refused_by_name() {
        let good = encode(&chapters(), false);
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "cut at {n}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(
            decode(&extra).unwrap_err(),
            Fault::Trailing {
                what: "TOC",
                extra: 1
            }
        );
        let mut scope = good.clone();
        scope[0] = 7;
        assert_eq!(
            decode(&scope).unwrap_err(),
            Fault::Value {
                what: "TOC",
                field: "scope",
                value: 7
            }
        );
        // An entry nested deeper than allowed, each level one entry of one child.
        let mut w = Writer::new();
        w.u8(1);
        w.u8(0);
        w.text("");
        w.u16(1);
        for _ in 0..=MAX_DEPTH {
            w.i32(3);
            w.text("x");
            w.u64(0);
            w.u64(0);
            w.i32(0);
            w.i32(0);
            w.text("");
            w.u16(1);
        }
        assert_eq!(
            decode(&w.into_bytes()).unwrap_err(),
            Fault::Limit {
                what: "TOC",
                field: "levels of entries",
                value: MAX_DEPTH as u64 + 1,
                limit: MAX_DEPTH as u64
            }
        );
        // An entry type GStreamer does not have.
        let mut w = Writer::new();
        w.u8(1);
        w.u8(0);
        w.text("");
        w.u16(1);
        w.i32(9);
        assert_eq!(
            decode(&w.into_bytes()).unwrap_err(),
            Fault::Value {
                what: "TOC entry",
                field: "type",
                value: 9
            }
        );
    }
}
