//! `framebussrc`: a live source whose buffers are the bus's slots.
//!
//! - **In order.** Frames come in sequence (`Reader::next_encoded`, for
//!   raw buses too): a pipeline held up for a moment catches up from the
//!   ring; one further behind skips to the newest frame, counted in `lost`.
//! - **Zero copy.** A buffer wraps the [`framebus::Frame`] it came from: the
//!   slot stays held while GStreamer holds the buffer and is released when
//!   the buffer is freed. A reader may hold `max_held` slots at once; when
//!   downstream already holds all but one, the next frame is copied (and
//!   counted in `copies`) instead of holding the last one, so reading never
//!   stops.
//! - **Caps** come from the bus header ([`crate::caps`]); raw buffers carry
//!   a `GstVideoMeta` with the bus's plane layout.
//! - **Timestamps** are the capture times: PTS is the running time at which
//!   the frame was captured (its CLOCK_MONOTONIC capture time mapped
//!   through the pipeline clock), and a `timestamp/x-unix` reference
//!   timestamp meta carries its CLOCK_REALTIME capture time. The buffer
//!   offset is the frame's sequence number on the bus.
//! - **Producer restarts.** `producer-gone=wait` (the default) posts a
//!   warning, waits for a new producer and resumes, with new caps when the
//!   format changed and a DISCONT buffer; `error` ends the pipeline with an
//!   error, `eos` ends the stream.
//! - **Keyframes.** On an encoded bus the stream starts at a keyframe, and
//!   an upstream `GstForceKeyUnit` event (a decoder or payloader asking)
//!   reaches the encoder as a bus keyframe request.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use framebus::{AttachError, Frame, FrameSpec, ReadError, Reader, ReaderOptions};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;

use crate::caps;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "framebussrc",
        gst::DebugColorFlags::empty(),
        Some("framebus bus source"),
    )
});

/// How long one wait for a frame lasts before flushing is checked again.
const POLL: Duration = Duration::from_millis(100);

/// What `framebussrc` does when the bus's producer goes away.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFramebusSrcProducerGone")]
pub enum ProducerGone {
    /// Wait for a new producer on the same name and resume.
    #[enum_value(name = "Wait for a new producer and resume", nick = "wait")]
    Wait = 0,
    /// Post an error (the pipeline stops).
    #[enum_value(name = "Post an error", nick = "error")]
    Error = 1,
    /// End the stream.
    #[enum_value(name = "End the stream (EOS)", nick = "eos")]
    Eos = 2,
}

#[derive(Debug, Clone)]
struct Settings {
    bus: Option<String>,
    shm_dir: Option<String>,
    attach_timeout: u32,
    producer_gone: ProducerGone,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bus: None,
            shm_dir: None,
            attach_timeout: 0,
            producer_gone: ProducerGone::Wait,
        }
    }
}

/// Counters, readable as properties while the pipeline runs.
#[derive(Default)]
struct Stats {
    frames: AtomicU64,
    copies: AtomicU64,
    lost: AtomicU64,
    restarts: AtomicU64,
}

/// The reader, locked by the streaming thread while it waits for a frame.
/// Never held while calling into GStreamer: setting caps runs
/// `decide_allocation` and downstream queries on this thread.
struct State {
    reader: Reader,
    /// The next buffer starts a new stretch (start, producer restart).
    discont: bool,
    /// The producer went away and has not come back yet.
    gone: bool,
}

/// Formats, locked only to read or write them.
#[derive(Default, Clone)]
struct Specs {
    /// The bus's, as last seen.
    bus: Option<FrameSpec>,
    /// The one the current caps describe.
    caps: Option<FrameSpec>,
    /// Its raw plane layout (`None` for compressed formats), worked out
    /// once per format rather than per frame.
    layout: Option<Arc<caps::RawLayout>>,
}

/// A raw frame copied into GStreamer's default layout for its format
/// (`l.default_offsets` / `l.default_strides`).
fn repacked(frame: &[u8], spec: &FrameSpec, l: &caps::RawLayout) -> Vec<u8> {
    let mut out = vec![0u8; l.default_size];
    for (i, p) in spec.planes().iter().enumerate() {
        let (so, ss) = (p.offset as usize, p.stride as usize);
        let (d_off, d_stride) = (l.default_offsets[i], l.default_strides[i] as usize);
        let n = p.row_bytes as usize;
        for r in 0..p.rows as usize {
            let (s0, d0) = (so + r * ss, d_off + r * d_stride);
            if s0 + n <= frame.len() && d0 + n <= out.len() {
                out[d0..d0 + n].copy_from_slice(&frame[s0..s0 + n]);
            }
        }
    }
    out
}

/// A bus slot lent to GStreamer: released when the buffer is freed.
struct Lent {
    frame: Option<Frame>,
    out: Arc<AtomicU32>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.frame.as_deref().unwrap_or(&[])
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        // The slot first, then the count: the streaming thread may take a
        // frame as soon as the count drops.
        drop(self.frame.take());
        self.out.fetch_sub(1, Ordering::Release);
    }
}

#[derive(Default)]
pub struct FramebusSrc {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    specs: Mutex<Specs>,
    /// Downstream accepts `GstVideoMeta` (decide_allocation).
    video_meta: AtomicBool,
    flushing: AtomicBool,
    keyframe_wanted: AtomicBool,
    /// Slots downstream holds now.
    out: Arc<AtomicU32>,
    /// The longest capture-to-push delay seen, ns.
    max_delay: AtomicU64,
    /// The minimum latency last answered, ns (`u64::MAX`: a new answer
    /// was asked for).
    reported_latency: AtomicU64,
    /// The last PTS pushed, ns + 1 (0: none since start).
    last_pts: AtomicU64,
    stats: Stats,
}

#[glib::object_subclass]
impl ObjectSubclass for FramebusSrc {
    const NAME: &'static str = "GstFramebusSrc";
    type Type = super::FramebusSrc;
    type ParentType = gst_base::PushSrc;
}

impl FramebusSrc {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn specs(&self) -> MutexGuard<'_, Specs> {
        self.specs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running time at which a frame captured at `mono_ns`
    /// (CLOCK_MONOTONIC) was captured. On GStreamer's system clock in its
    /// default monotonic mode that is exactly `mono_ns − base_time`; on any
    /// other clock, the clock's now minus the frame's age. `Err` for a
    /// frame captured before the pipeline (last) started playing, which
    /// has no running time; `Ok(None)` without a clock.
    fn running_time_of(&self, mono_ns: u64) -> Result<Option<gst::ClockTime>, ()> {
        let obj = self.obj();
        let (Some(clock), Some(base)) = (obj.clock(), obj.base_time()) else {
            return Ok(None);
        };
        let monotonic = clock.downcast_ref::<gst::SystemClock>().is_some_and(|c| {
            c.property::<gst::ClockType>("clock-type") == gst::ClockType::Monotonic
        });
        let capture = if monotonic {
            Some(gst::ClockTime::from_nseconds(mono_ns))
        } else {
            let age = framebus::monotonic_ns().saturating_sub(mono_ns);
            clock.time().checked_sub(gst::ClockTime::from_nseconds(age))
        };
        capture
            .and_then(|c| c.checked_sub(base))
            .map(Some)
            .ok_or(())
    }

    /// The bus's frame interval (33 ms when it states no rate).
    fn interval(&self) -> gst::ClockTime {
        self.specs()
            .bus
            .filter(|s| s.fps.num > 0)
            .and_then(|s| {
                gst::ClockTime::SECOND.mul_div_floor(u64::from(s.fps.den), u64::from(s.fps.num))
            })
            .unwrap_or(gst::ClockTime::from_mseconds(33))
    }

    /// Remembers how long after its capture a frame was pushed; when that
    /// grows past the latency last reported by more than half a frame, the
    /// pipeline is told to ask again (an encoded bus's frames arrive an
    /// encode after their capture).
    fn note_delay(&self, mono_ns: u64, interval: gst::ClockTime) {
        let delay = framebus::monotonic_ns().saturating_sub(mono_ns);
        let reported = self.reported_latency.load(Ordering::Relaxed);
        let seen = self
            .max_delay
            .fetch_max(delay, Ordering::Relaxed)
            .max(delay);
        if seen > reported.max(interval.nseconds()) + interval.nseconds() / 2 {
            self.reported_latency.store(u64::MAX, Ordering::Relaxed);
            if reported != u64::MAX {
                let _ = self
                    .obj()
                    .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
            }
        }
    }

    /// The buffer for `frame`: the slot itself, or a copy when downstream
    /// holds all the slots but one.
    fn buffer_of(
        &self,
        frame: Frame,
        pts: Option<gst::ClockTime>,
        max_held: u32,
        discont: bool,
    ) -> gst::Buffer {
        let spec = *frame.spec();
        let (realtime_ns, seq, key) = (frame.realtime_ns(), frame.seq(), frame.is_keyframe());
        let layout = self.specs().layout.clone();
        let meta_ok = self.video_meta.load(Ordering::Relaxed);
        // Downstream that takes no `GstVideoMeta` assumes GStreamer's
        // default layout; a bus laid out otherwise (odd widths: see
        // caps::raw_layout) is then repacked into it (a copy, counted).
        let repack = layout.as_ref().filter(|l| !l.is_default && !meta_ok);
        let held = self.out.load(Ordering::Acquire);
        let mut buffer = if let Some(l) = repack {
            self.stats.copies.fetch_add(1, Ordering::Relaxed);
            gst::Buffer::from_mut_slice(repacked(&frame, &spec, l))
        } else if held + 1 < max_held {
            self.out.fetch_add(1, Ordering::AcqRel);
            gst::Buffer::from_slice(Lent {
                frame: Some(frame),
                out: Arc::clone(&self.out),
            })
        } else {
            self.stats.copies.fetch_add(1, Ordering::Relaxed);
            gst::Buffer::from_slice(frame.to_vec())
        };
        let b = buffer.get_mut().expect("a new buffer is writable");
        b.set_pts(pts);
        if spec.format == framebus::PixelFormat::H264 {
            // The framebus encoder makes no B-frames: decode order is
            // presentation order, and muxers want a DTS.
            b.set_dts(pts);
        }
        gst::log!(CAT, imp = self, "frame {seq}: pts {pts:?}");
        if spec.fps.num > 0 {
            b.set_duration(
                gst::ClockTime::SECOND
                    .mul_div_floor(u64::from(spec.fps.den), u64::from(spec.fps.num)),
            );
        }
        b.set_offset(seq);
        if !key {
            b.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
        if discont {
            b.set_flags(gst::BufferFlags::DISCONT);
        }
        gst::ReferenceTimestampMeta::add(
            b,
            &caps::UNIX,
            gst::ClockTime::from_nseconds(realtime_ns),
            None,
        );
        if let Some(l) = layout.as_ref().filter(|_| repack.is_none()) {
            if meta_ok || !l.is_default {
                let _ = gst_video::VideoMeta::add_full(
                    b,
                    gst_video::VideoFrameFlags::empty(),
                    l.format,
                    spec.width,
                    spec.height,
                    &l.offsets,
                    &l.strides,
                );
            }
        }
        buffer
    }

    fn attach(&self, settings: &Settings) -> Result<Reader, gst::ErrorMessage> {
        let bus = settings.bus.clone().ok_or_else(|| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("no bus: set the `bus` property (framebussrc bus=cam0)")
            )
        })?;
        let opts = ReaderOptions {
            wait: (settings.attach_timeout > 0)
                .then(|| Duration::from_secs(u64::from(settings.attach_timeout))),
            shm_dir: settings.shm_dir.clone().map(Into::into),
        };
        let reader = Reader::attach(&bus, opts).map_err(|e| {
            let kind = match e {
                AttachError::Name(_) => gst::ResourceError::Settings,
                AttachError::NotFound { .. }
                | AttachError::Timeout { .. }
                | AttachError::ProducerGone { .. } => gst::ResourceError::NotFound,
                _ => gst::ResourceError::OpenRead,
            };
            gst::error_msg!(kind, ("{e}"))
        })?;
        if reader.spec().format.is_audio() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "bus {bus:?} carries audio ({}); framebussrc reads video buses",
                    reader.spec().format
                )
            ));
        }
        Ok(reader)
    }

    /// Sets the caps for `spec` unless they already describe it.
    fn ensure_caps(&self, spec: FrameSpec) -> Result<(), gst::FlowError> {
        if self.specs().caps == Some(spec) {
            return Ok(());
        }
        let caps = caps::of_spec(&spec);
        gst::info!(CAT, imp = self, "caps {caps}");
        // Asked first: a refused caps event alone would only surface as
        // a bare not-negotiated flow error at the next buffer.
        let accepted = self
            .obj()
            .static_pad("src")
            .is_some_and(|p| p.peer_query_accept_caps(&caps));
        if !accepted || self.obj().set_caps(&caps).is_err() {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("downstream refuses the bus's format {caps}")
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        let mut specs = self.specs();
        specs.caps = Some(spec);
        specs.layout = caps::raw_layout(&spec).map(Arc::new);
        Ok(())
    }

    /// Waits for the next frame; `Ok(None)` when the stream should end.
    fn next_frame(&self, state: &mut State) -> Result<Option<Frame>, gst::FlowError> {
        let producer_gone = self.settings().producer_gone;
        loop {
            if self.flushing.load(Ordering::Acquire) {
                return Err(gst::FlowError::Flushing);
            }
            if self.keyframe_wanted.swap(false, Ordering::AcqRel) {
                let _ = state.reader.request_keyframe();
            }
            // In order, whatever the format: a pipeline held up for a
            // moment catches up from the ring and loses nothing (as
            // v4l2src's queue does); one that falls further behind than
            // the ring holds skips to the newest keyframe (any raw frame)
            // and counts the frames it lost.
            match state.reader.next_encoded(Some(POLL)) {
                Ok(frame) => {
                    if state.gone {
                        state.gone = false;
                        state.discont = true;
                        self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                        gst::info!(
                            CAT,
                            imp = self,
                            "bus {}: a new producer, resuming",
                            state.reader.name()
                        );
                    }
                    return Ok(Some(frame));
                }
                Err(ReadError::Timeout { .. }) => continue,
                Err(e @ ReadError::ProducerGone { .. }) => match producer_gone {
                    ProducerGone::Wait => {
                        state.gone = true;
                        gst::element_imp_warning!(
                            self,
                            gst::ResourceError::Read,
                            ("{e}; waiting for a new producer (producer-gone=wait)")
                        );
                    }
                    ProducerGone::Eos => {
                        gst::info!(CAT, imp = self, "{e}: end of stream (producer-gone=eos)");
                        return Ok(None);
                    }
                    ProducerGone::Error => {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::Read,
                            ("{e} (producer-gone=error)")
                        );
                        return Err(gst::FlowError::Error);
                    }
                },
                Err(e) => {
                    gst::element_imp_error!(self, gst::ResourceError::Read, ("{e}"));
                    return Err(gst::FlowError::Error);
                }
            }
        }
    }
}

impl ObjectImpl for FramebusSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("bus")
                    .nick("Bus")
                    .blurb("Name of the bus to read (framebus ls lists them)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("shm-dir")
                    .nick("Shared-memory directory")
                    .blurb("Directory of the bus's segment (default: $FRAMEBUS_SHM_DIR or /dev/shm)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("attach-timeout")
                    .nick("Attach timeout")
                    .blurb("Seconds to wait at start for the bus to appear (0: fail at once when it is missing); the change to PAUSED waits that long")
                    .maximum(600)
                    .default_value(0)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("producer-gone", ProducerGone::Wait)
                    .nick("When the producer goes")
                    .blurb("wait: resume with the next producer; error: fail; eos: end the stream")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("frames")
                    .nick("Frames")
                    .blurb("Buffers pushed")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("copies")
                    .nick("Copies")
                    .blurb("Buffers copied because downstream held all the slots this reader may hold but one (0 when zero copy held throughout)")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("lost")
                    .nick("Lost")
                    .blurb("Frames the bus carried that this source did not read in time")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("restarts")
                    .nick("Producer restarts")
                    .blurb("Times the source resumed with a new producer")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = self.settings();
        match pspec.name() {
            "bus" => s.bus = value.get().expect("type checked upstream"),
            "shm-dir" => s.shm_dir = value.get().expect("type checked upstream"),
            "attach-timeout" => s.attach_timeout = value.get().expect("type checked upstream"),
            "producer-gone" => s.producer_gone = value.get().expect("type checked upstream"),
            other => unreachable!("no property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed).to_value();
        match pspec.name() {
            "bus" => s.bus.to_value(),
            "shm-dir" => s.shm_dir.to_value(),
            "attach-timeout" => s.attach_timeout.to_value(),
            "producer-gone" => s.producer_gone.to_value(),
            "frames" => n(&self.stats.frames),
            "copies" => n(&self.stats.copies),
            "lost" => n(&self.stats.lost),
            "restarts" => n(&self.stats.restarts),
            other => unreachable!("no property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(true);
        obj.set_format(gst::Format::Time);
    }
}

impl GstObjectImpl for FramebusSrc {}

impl ElementImpl for FramebusSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "framebus source",
                "Source/Video",
                "Reads the frames of a framebus bus in place (zero copy), with their capture times",
                "framebus developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| vec![caps::pad_template("src", gst::PadDirection::Src)]);
        TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for FramebusSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings().clone();
        let reader = self.attach(&settings)?;
        gst::info!(
            CAT,
            imp = self,
            "attached to {} ({:?})",
            reader.name(),
            reader.spec()
        );
        *self.specs() = Specs {
            bus: Some(*reader.spec()),
            ..Specs::default()
        };
        *self.state() = Some(State {
            reader,
            discont: true,
            gone: false,
        });
        for c in [
            &self.stats.frames,
            &self.stats.copies,
            &self.stats.lost,
            &self.stats.restarts,
            &self.max_delay,
            &self.reported_latency,
            &self.last_pts,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state() = None;
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        let specs = self.specs().clone();
        let spec = specs.caps.or(specs.bus);
        let caps = spec.map_or_else(caps::template, |s| caps::of_spec(&s));
        Some(match filter {
            Some(f) => f.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        })
    }

    fn negotiate(&self) -> Result<(), gst::LoggableError> {
        let Some(spec) = self.specs().bus else {
            return Err(gst::loggable_error!(CAT, "not started"));
        };
        self.ensure_caps(spec)
            .map_err(|_| gst::loggable_error!(CAT, "downstream refuses {spec:?}"))
    }

    fn decide_allocation(
        &self,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        let meta = query
            .find_allocation_meta::<gst_video::VideoMeta>()
            .is_some();
        self.video_meta.store(meta, Ordering::Relaxed);
        self.parent_decide_allocation(query)
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            // A buffer is pushed this long after its capture time (its
            // PTS): one frame interval for a raw bus, more for an encoded
            // one (the encode), as measured. Buffers can wait in the ring
            // for as long as it holds frames (8 by default).
            let frame = self.interval();
            let min = frame.max(gst::ClockTime::from_nseconds(
                self.max_delay.load(Ordering::Relaxed),
            ));
            self.reported_latency
                .store(min.nseconds(), Ordering::Relaxed);
            q.set(true, min, Some(min + frame * 8));
            return true;
        }
        BaseSrcImplExt::parent_query(self, query)
    }

    fn event(&self, event: &gst::Event) -> bool {
        if gst_video::UpstreamForceKeyUnitEvent::parse(event).is_ok() {
            gst::debug!(CAT, imp = self, "keyframe requested upstream");
            self.keyframe_wanted.store(true, Ordering::Release);
            return true;
        }
        self.parent_event(event)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.store(true, Ordering::Release);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.store(false, Ordering::Release);
        Ok(())
    }
}

impl PushSrcImpl for FramebusSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let (frame, pts, discont, max_held) = {
            let mut guard = self.state();
            let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            // A live source: frames captured before the pipeline (last)
            // started playing have no running time, and PTS never goes
            // back (frames left in the ring across a pause): such frames
            // are not pushed. On an encoded bus the stream then starts at
            // the next keyframe, asked for at once.
            let mut need_key = false;
            let last = self.last_pts.load(Ordering::Relaxed);
            let (frame, pts) = loop {
                let Some(frame) = self.next_frame(state)? else {
                    return Err(gst::FlowError::Eos);
                };
                let encoded = frame.spec().format == framebus::PixelFormat::H264;
                let pts = self.running_time_of(frame.mono_ns()).and_then(|p| match p {
                    Some(p) if p.nseconds() < last => Err(()),
                    p => Ok(p),
                });
                match pts {
                    Ok(pts) if !need_key || frame.is_keyframe() => break (frame, pts),
                    Ok(_) => {}
                    Err(()) if encoded && !need_key => {
                        need_key = true;
                        let _ = state.reader.request_keyframe();
                    }
                    Err(()) => {}
                }
            };
            // An encoded reader that fell behind restarted at a keyframe:
            // a decoder must know.
            let restarted =
                frame.skipped() > 0 && frame.spec().format == framebus::PixelFormat::H264;
            let discont = std::mem::take(&mut state.discont) || restarted;
            (frame, pts, discont, state.reader.max_held().unwrap_or(1))
        };
        let spec = *frame.spec();
        self.specs().bus = Some(spec);
        self.ensure_caps(spec)?;
        if let Some(p) = pts {
            self.last_pts.store(p.nseconds() + 1, Ordering::Relaxed);
        }
        self.note_delay(frame.mono_ns(), self.interval());
        self.stats
            .lost
            .fetch_add(frame.skipped(), Ordering::Relaxed);
        let buffer = self.buffer_of(frame, pts, max_held, discont);
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        Ok(CreateSuccess::NewBuffer(buffer))
    }
}
