//! `--push`: publish one stream to an external RTSP server (ANNOUNCE +
//! RECORD, e.g. MediaMTX) with libavformat's RTSP muxer, reconnecting with
//! exponential backoff when the server goes away.
//!
//! `ffmpeg_next::format::output_as(url, "rtsp")` fails ("Protocol not
//! found": it opens an AVIO for the URL, which the RTSP muxer, a NOFILE
//! format, does not want), so the context comes from
//! `avformat_alloc_output_context2` through the FFI and is then wrapped.
//!
//! The pusher is a client of the shared stream like any viewer: it holds a
//! [`ClientSlot`](super::stream::ClientSlot) (keeping the encoder running)
//! and reads the broadcast of access units on a blocking thread, so a slow
//! server only makes the pusher skip to the next IDR.

use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ff::{format, Dictionary, Packet, Rational};
use ffmpeg_next as ff;
use tokio::sync::broadcast::{self, error::RecvError};

use super::h264::depacketize;
use super::stream::{AccessUnit, Stream, StreamParams, Streams};

/// Backoff bounds between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Where to push what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushTarget {
    /// `rtsp://server:port/path`.
    pub url: String,
    /// The stream pushed: `bus/profile` (the encoded bus
    /// `{bus}.h264.{profile}`) or an encoded bus name.
    pub path: String,
}

/// Why one push session ended.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The URL contains a NUL byte.
    #[error("push URL contains a NUL byte")]
    Url,
    /// libavformat could not create the RTSP muxer.
    #[error("cannot create the RTSP muxer for {url}: {source}")]
    Alloc {
        /// The URL.
        url: String,
        /// The ffmpeg error.
        source: ff::Error,
    },
    /// ANNOUNCE/SETUP/RECORD failed (server down, refused).
    #[error("cannot start publishing to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The ffmpeg error.
        source: ff::Error,
    },
    /// Sending media failed (server went away).
    #[error("publishing to {url} failed: {source}")]
    Write {
        /// The URL.
        url: String,
        /// The ffmpeg error.
        source: ff::Error,
    },
    /// The stream ended (encoder stopped).
    #[error("the source stream ended")]
    Ended,
}

/// Pushes `target` forever, reconnecting with backoff.
pub async fn run(streams: Arc<Streams>, target: PushTarget) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        match push_once(&streams, &target).await {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(url = %target.url, error = %e, retry_in = ?backoff, "push failed")
            }
        }
        if started.elapsed() > BACKOFF_MAX {
            backoff = BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn push_once(streams: &Arc<Streams>, target: &PushTarget) -> Result<(), String> {
    let stream = streams.get(&target.path).map_err(|e| e.to_string())?;
    let slot = stream.join().map_err(|e| e.to_string())?;
    let params = stream.params().await.map_err(|e| e.to_string())?;
    let rx = stream.subscribe();
    stream.request_keyframe();
    let url = target.url.clone();
    let s = Arc::clone(&stream);
    let res = tokio::task::spawn_blocking(move || push_session(&url, &params, rx, &s))
        .await
        .map_err(|e| format!("push thread panicked: {e}"))?;
    drop(slot);
    res.map_err(|e| e.to_string())
}

/// One connection to the server: header, then access units until error.
fn push_session(
    url: &str,
    params: &StreamParams,
    mut rx: broadcast::Receiver<Arc<AccessUnit>>,
    stream: &Stream,
) -> Result<(), PushError> {
    let mut out = alloc_rtsp_output(url)?;
    {
        let mut st = out
            .add_stream(ff::codec::Id::H264)
            .map_err(|source| PushError::Alloc {
                url: url.to_string(),
                source,
            })?;
        st.set_time_base(Rational::new(1, 90_000));
        let mut extradata = Vec::new();
        for ps in [&params.sps, &params.pps] {
            extradata.extend_from_slice(&[0, 0, 0, 1]);
            extradata.extend_from_slice(ps);
        }
        // SAFETY: (1) `st` is a stream of `out`, so `codecpar` is a valid,
        // exclusively borrowed AVCodecParameters; (2) the extradata buffer
        // is allocated with av_mallocz including the padding libavformat
        // requires, and ownership passes to codecpar (freed with it).
        unsafe {
            let par = (*st.as_mut_ptr()).codecpar;
            (*par).codec_type = ff::ffi::AVMediaType::AVMEDIA_TYPE_VIDEO;
            (*par).codec_id = ff::ffi::AVCodecID::AV_CODEC_ID_H264;
            (*par).width = params.width as i32;
            (*par).height = params.height as i32;
            let pad = ff::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
            let buf = ff::ffi::av_mallocz(extradata.len() + pad) as *mut u8;
            if !buf.is_null() {
                std::ptr::copy_nonoverlapping(extradata.as_ptr(), buf, extradata.len());
                (*par).extradata = buf;
                (*par).extradata_size = extradata.len() as i32;
            }
        }
    }
    let mut opts = Dictionary::new();
    opts.set("rtsp_transport", "tcp");
    // Socket I/O timeout (µs), so a hung server fails the write.
    opts.set("timeout", "5000000");
    out.write_header_with(opts)
        .map_err(|source| PushError::Connect {
            url: url.to_string(),
            source,
        })?;
    tracing::info!(url, "pushing");
    let tb = out
        .stream(0)
        .map(|s| s.time_base())
        .unwrap_or(Rational::new(1, 90_000));
    let mut first_ts: Option<u32> = None;
    let mut need_key = true;
    loop {
        let au = match rx.blocking_recv() {
            Ok(au) => au,
            Err(RecvError::Lagged(_)) => {
                need_key = true;
                stream.request_keyframe();
                continue;
            }
            Err(RecvError::Closed) => return Err(PushError::Ended),
        };
        if need_key && !au.key {
            continue;
        }
        need_key = false;
        let Ok(annexb) = depacketize(&au.packets) else {
            continue;
        };
        let first = *first_ts.get_or_insert(au.rtp_ts);
        let pts90 = i64::from(au.rtp_ts.wrapping_sub(first));
        let mut pkt = Packet::copy(&annexb);
        pkt.set_stream(0);
        pkt.set_pts(Some(pts90));
        pkt.set_dts(Some(pts90));
        pkt.rescale_ts(Rational::new(1, 90_000), tb);
        if au.key {
            pkt.set_flags(ff::codec::packet::Flags::KEY);
        }
        pkt.write_interleaved(&mut out)
            .map_err(|source| PushError::Write {
                url: url.to_string(),
                source,
            })?;
    }
}

fn alloc_rtsp_output(url: &str) -> Result<format::context::Output, PushError> {
    ff::init().map_err(|source| PushError::Alloc {
        url: url.to_string(),
        source,
    })?;
    let c_url = CString::new(url).map_err(|_| PushError::Url)?;
    let c_fmt = CString::new("rtsp").map_err(|_| PushError::Url)?;
    let mut ctx: *mut ff::ffi::AVFormatContext = std::ptr::null_mut();
    // SAFETY: the out-pointer is a valid local; the format name and URL are
    // NUL-terminated strings that outlive the call (libavformat copies the
    // URL); a null oformat asks libavformat to look the format up by name.
    let rc = unsafe {
        ff::ffi::avformat_alloc_output_context2(
            &mut ctx,
            std::ptr::null(),
            c_fmt.as_ptr(),
            c_url.as_ptr(),
        )
    };
    if rc < 0 || ctx.is_null() {
        return Err(PushError::Alloc {
            url: url.to_string(),
            source: ff::Error::from(rc.min(-1)),
        });
    }
    // SAFETY: `ctx` is a freshly allocated output context that nothing
    // else references; `Output` takes ownership and frees it on drop (the
    // RTSP muxer is AVFMT_NOFILE, so there is no AVIO to close).
    Ok(unsafe { format::context::Output::wrap(ctx) })
}
