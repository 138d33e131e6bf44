//! HLS output: CMAF (fragmented MP4) init segments and fragments for H.264.

pub mod fmp4;
