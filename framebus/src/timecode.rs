//! The time code carried by test frames (see `docs/timecode.md`).
