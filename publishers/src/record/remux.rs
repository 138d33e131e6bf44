//! Reading back the fragmented MP4 files the recorder writes (stub until the real one lands).
#![allow(missing_docs, dead_code, unused)]
use crate::fmp4::VideoTrack;
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
#[error("remux")]
pub struct RemuxError;
#[derive(Debug, Clone)]
pub struct SampleRef;
#[derive(Debug)]
pub struct Scan {
    pub track: VideoTrack,
    pub samples: Vec<SampleRef>,
    pub valid_len: u64,
    pub truncated: u64,
}
impl Scan {
    pub fn frames(&self) -> usize {
        0
    }
    pub fn duration_secs(&self) -> f64 {
        0.0
    }
}
pub fn scan(_p: &Path) -> Result<Scan, RemuxError> {
    Err(RemuxError)
}
#[derive(Debug)]
pub struct Progressive;
impl Progressive {
    pub fn new(
        _t: &VideoTrack,
        _parts: &[(PathBuf, &[SampleRef])],
    ) -> Result<Progressive, RemuxError> {
        Err(RemuxError)
    }
    pub fn total_len(&self) -> u64 {
        0
    }
    pub fn read_range(
        &self,
        _a: u64,
        _b: u64,
        _f: impl FnMut(&[u8]) -> bool,
    ) -> std::io::Result<()> {
        Ok(())
    }
}
pub fn span(
    _dir: &Path,
    _segs: &[super::recording::Recording],
    _a: u64,
    _b: u64,
) -> Result<Progressive, RemuxError> {
    Err(RemuxError)
}
