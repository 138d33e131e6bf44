//! Reading back the fragmented MP4 files the recorder writes (placeholder).
