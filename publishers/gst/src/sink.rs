//! `framebussink`: writes the buffers it gets into a bus (loan → fill →
//! publish), so any GStreamer pipeline feeds framebus readers.
//!
//! - The bus is created when caps arrive ([`crate::caps::to_spec`]) and
//!   closed when the element stops; new caps mid-stream close it and create
//!   it again in the new format (readers follow, as across a producer
//!   restart).
//! - Raw video is copied plane by plane into the slot (one copy: the bus
//!   takes GStreamer's strides, so a default-layout buffer copies each
//!   plane at once); JPEG and H.264 access units are copied whole. H.264
//!   keyframes set the bus's codec configuration (SPS and PPS), and a
//!   reader's keyframe request goes upstream as a `GstForceKeyUnit` event,
//!   which encoders such as `x264enc` honour.
//! - Capture times: a `timestamp/x-unix` reference timestamp meta, when the
//!   buffer has one, is the CLOCK_REALTIME capture time; otherwise the
//!   buffer's age (running time now − its PTS) is taken off the time of
//!   rendering, for both clocks.
//! - Never waits for readers: when they hold every usable slot the frame is
//!   dropped and counted (`dropped`), as the producer does. Only the first
//!   frame can wait, for `wait-for-readers` readers to attach (bounded by
//!   `wait-timeout`; waited for when the caps arrive, before the pipeline
//!   prerolls, so its clock starts after the wait), so a short or offline
//!   pipeline loses nothing to a reader that attaches a moment after the
//!   bus appears.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use framebus::h264::{join_annex_b, nal, nal_type, split_annex_b};
use framebus::{CodecConfig, FrameFlags, FrameMeta, FrameSpec, PixelFormat, Writer, WriterOptions};
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use gst_video::prelude::*;

use crate::caps;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "framebussink",
        gst::DebugColorFlags::empty(),
        Some("framebus bus sink"),
    )
});

#[derive(Debug, Clone)]
struct Settings {
    bus: Option<String>,
    shm_dir: Option<String>,
    slots: u32,
    max_held: u32,
    max_readers: u32,
    wait_for_readers: u32,
    wait_timeout: u32,
}

impl Default for Settings {
    fn default() -> Self {
        let d = WriterOptions::default();
        Settings {
            bus: None,
            shm_dir: None,
            slots: d.slots,
            max_held: d.max_held,
            max_readers: d.max_readers,
            wait_for_readers: 0,
            wait_timeout: 30,
        }
    }
}

struct State {
    writer: Writer,
    spec: FrameSpec,
    /// Raw video: the incoming buffers' layout.
    info: Option<gst_video::VideoInfo>,
    /// H.264: the configuration last written to the bus.
    codec: Option<CodecConfig>,
    /// Keyframe requests of the bus's readers already passed upstream.
    keyframe_requests: u64,
}

#[derive(Default)]
pub struct FramebusSink {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    frames: AtomicU64,
    dropped: AtomicU64,
    flushing: AtomicBool,
    /// The first frame has waited for `wait-for-readers` (once per start,
    /// whatever caps follow).
    readers_met: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for FramebusSink {
    const NAME: &'static str = "GstFramebusSink";
    type Type = super::FramebusSink;
    type ParentType = gst_base::BaseSink;
}

/// H.264 codec configuration from a keyframe's SPS and PPS (`None` when
/// the access unit carries neither).
fn h264_config(au: &[u8]) -> Option<CodecConfig> {
    let nals = split_annex_b(au);
    let sps = nals.iter().find(|n| nal_type(n) == nal::SPS)?;
    let pps = nals.iter().find(|n| nal_type(n) == nal::PPS)?;
    let pl = |i: usize| u32::from(sps.get(i).copied().unwrap_or(0));
    Some(CodecConfig {
        time_base: (1, 90_000),
        profile_level: pl(1) << 16 | pl(2) << 8 | pl(3),
        config: join_annex_b([*sps, *pps]),
    })
}

/// Copies `rows` rows of `row_bytes` from `src` (stride `src_stride`) to
/// `dst` (stride `dst_stride`), in one go when the strides agree.
fn copy_plane(
    dst: &mut [u8],
    dst_stride: usize,
    src: &[u8],
    src_stride: usize,
    rows: usize,
    row_bytes: usize,
) {
    if dst_stride == src_stride {
        let n = dst.len().min(src.len()).min(dst_stride * rows);
        dst[..n].copy_from_slice(&src[..n]);
        return;
    }
    for r in 0..rows {
        let (d, s) = (r * dst_stride, r * src_stride);
        if d + row_bytes > dst.len() || s + row_bytes > src.len() {
            break;
        }
        dst[d..d + row_bytes].copy_from_slice(&src[s..s + row_bytes]);
    }
}

impl FramebusSink {
    fn settings(&self) -> MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, Option<State>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The buffer's capture times on the bus's two clocks.
    fn capture_times(&self, buffer: &gst::BufferRef) -> (u64, u64) {
        let (mono_now, real_now) = (framebus::monotonic_ns(), framebus::realtime_ns());
        let obj = self.obj();
        let age = (|| {
            let running = obj.clock()?.time().checked_sub(obj.base_time()?)?;
            let pts = obj
                .segment()
                .downcast::<gst::ClockTime>()
                .ok()?
                .to_running_time(buffer.pts()?)?;
            Some(running.saturating_sub(pts).nseconds())
        })()
        .unwrap_or(0);
        let unix = caps::unix_capture_ns(buffer);
        (
            mono_now.saturating_sub(age),
            unix.unwrap_or_else(|| real_now.saturating_sub(age)),
        )
    }

    fn create(&self, fmt: caps::SinkFormat) -> Result<State, gst::ErrorMessage> {
        let s = self.settings().clone();
        let bus = s.bus.ok_or_else(|| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("no bus: set the `bus` property (framebussink bus=name)")
            )
        })?;
        let opts = WriterOptions {
            slots: s.slots,
            max_held: s.max_held,
            max_readers: s.max_readers,
            shm_dir: s.shm_dir.map(Into::into),
            source: format!("gstreamer:{}", self.obj().name()),
            ..WriterOptions::default()
        };
        let writer = Writer::create(&bus, fmt.spec, opts)
            .map_err(|e| gst::error_msg!(gst::ResourceError::OpenWrite, ("{e}")))?;
        gst::info!(CAT, imp = self, "created bus {bus} ({:?})", fmt.spec);
        Ok(State {
            writer,
            spec: fmt.spec,
            info: fmt.info,
            codec: None,
            keyframe_requests: 0,
        })
    }

    /// Holds the first frame until `wait-for-readers` readers are attached
    /// (bounded by `wait-timeout`; flushing ends the wait).
    fn wait_for_readers(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.readers_met.load(Ordering::Acquire) {
            return Ok(gst::FlowSuccess::Ok);
        }
        let (want, limit) = {
            let s = self.settings();
            (
                s.wait_for_readers,
                Duration::from_secs(u64::from(s.wait_timeout)),
            )
        };
        let start = Instant::now();
        loop {
            {
                let guard = self.state();
                let state = guard.as_ref().ok_or(gst::FlowError::NotNegotiated)?;
                let have = state.writer.readers();
                if have >= want {
                    self.readers_met.store(true, Ordering::Release);
                    return Ok(gst::FlowSuccess::Ok);
                }
                if start.elapsed() >= limit {
                    let name = state.writer.name().to_string();
                    drop(guard);
                    gst::element_imp_error!(
                        self,
                        gst::ResourceError::Busy,
                        ("bus {name}: {have} of {want} readers attached within {limit:?} (wait-for-readers)")
                    );
                    return Err(gst::FlowError::Error);
                }
            }
            if self.flushing.load(Ordering::Acquire) {
                return Err(gst::FlowError::Flushing);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Writes `buffer` into the bus; `Ok(false)` when every usable slot was
    /// held (the frame is dropped, as the producer drops it).
    fn write(&self, state: &mut State, buffer: &gst::Buffer) -> Result<bool, gst::ErrorMessage> {
        let (mono_ns, realtime_ns) = self.capture_times(buffer);
        let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let mut meta = FrameMeta {
            mono_ns,
            realtime_ns,
            flags: if key {
                FrameFlags::KEY
            } else {
                FrameFlags::default()
            },
            pts: 0,
            source_seq: 0,
        };
        if let Some(info) = &state.info {
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer.as_ref(), info)
                .map_err(|e| {
                gst::error_msg!(
                    gst::StreamError::Format,
                    ("a buffer that is not a {info:?} frame: {e}")
                )
            })?;
            let planes = state.spec.planes().to_vec();
            let Ok(mut loan) = state.writer.loan() else {
                return Ok(false);
            };
            for (i, (dst, p)) in loan.planes_mut().into_iter().zip(&planes).enumerate() {
                let src = frame
                    .plane_data(i as u32)
                    .map_err(|e| gst::error_msg!(gst::StreamError::Format, ("plane {i}: {e}")))?;
                let src_stride = frame.plane_stride()[i].max(0) as usize;
                copy_plane(
                    dst,
                    p.stride as usize,
                    src,
                    src_stride,
                    p.rows as usize,
                    p.row_bytes as usize,
                );
            }
            loan.publish(meta);
            return Ok(true);
        }
        let map = buffer
            .map_readable()
            .map_err(|e| gst::error_msg!(gst::StreamError::Failed, ("map: {e}")))?;
        if state.spec.format == PixelFormat::H264 {
            if key {
                if let Some(c) = h264_config(&map).filter(|c| state.codec.as_ref() != Some(c)) {
                    state
                        .writer
                        .set_codec(&c)
                        .map_err(|e| gst::error_msg!(gst::ResourceError::Write, ("{e}")))?;
                    state.codec = Some(c);
                }
            }
            meta.pts = buffer.pts().map_or(0, |t| t.nseconds() * 9 / 100_000);
        }
        let Ok(mut loan) = state.writer.loan() else {
            return Ok(false);
        };
        if let Err(e) = loan.set_len(map.len()) {
            // Larger than a slot: dropped and counted by the bus (oversize).
            gst::warning!(CAT, imp = self, "{e}");
            return Ok(false);
        }
        loan.capacity_mut()[..map.len()].copy_from_slice(&map);
        loan.publish(meta);
        Ok(true)
    }
}

impl ObjectImpl for FramebusSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecString::builder("bus")
                    .nick("Bus")
                    .blurb("Name of the bus to create and write")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("shm-dir")
                    .nick("Shared-memory directory")
                    .blurb("Directory of the bus's segment (default: $FRAMEBUS_SHM_DIR or /dev/shm)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("slots")
                    .nick("Slots")
                    .blurb("Slots in the ring (3..64; never drops while slots >= readers x max-held + 2)")
                    .minimum(3)
                    .maximum(64)
                    .default_value(d.slots)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-held")
                    .nick("Max held")
                    .blurb("Slots one reader may hold at once")
                    .minimum(1)
                    .maximum(62)
                    .default_value(d.max_held)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-readers")
                    .nick("Max readers")
                    .blurb("Readers that may attach at once")
                    .minimum(1)
                    .maximum(1024)
                    .default_value(d.max_readers)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("wait-for-readers")
                    .nick("Wait for readers")
                    .blurb("Hold the first frame until this many readers are attached (0: never wait)")
                    .maximum(1024)
                    .default_value(d.wait_for_readers)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("wait-timeout")
                    .nick("Wait timeout")
                    .blurb("Seconds the first frame waits for wait-for-readers; then an error")
                    .minimum(1)
                    .maximum(24 * 3600)
                    .default_value(d.wait_timeout)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("frames")
                    .nick("Frames")
                    .blurb("Frames published")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("dropped")
                    .nick("Dropped")
                    .blurb("Frames dropped: readers held every usable slot, or a frame larger than a slot")
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
            "slots" => s.slots = value.get().expect("type checked upstream"),
            "max-held" => s.max_held = value.get().expect("type checked upstream"),
            "max-readers" => s.max_readers = value.get().expect("type checked upstream"),
            "wait-for-readers" => s.wait_for_readers = value.get().expect("type checked upstream"),
            "wait-timeout" => s.wait_timeout = value.get().expect("type checked upstream"),
            other => unreachable!("no property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = self.settings();
        match pspec.name() {
            "bus" => s.bus.to_value(),
            "shm-dir" => s.shm_dir.to_value(),
            "slots" => s.slots.to_value(),
            "max-held" => s.max_held.to_value(),
            "max-readers" => s.max_readers.to_value(),
            "wait-for-readers" => s.wait_for_readers.to_value(),
            "wait-timeout" => s.wait_timeout.to_value(),
            "frames" => self.frames.load(Ordering::Relaxed).to_value(),
            "dropped" => self.dropped.load(Ordering::Relaxed).to_value(),
            other => unreachable!("no property {other}"),
        }
    }
}

impl GstObjectImpl for FramebusSink {}

impl ElementImpl for FramebusSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "framebus sink",
                "Sink/Video",
                "Writes frames into a framebus bus that any framebus reader can read",
                "framebus developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> =
            LazyLock::new(|| vec![caps::pad_template("sink", gst::PadDirection::Sink)]);
        TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for FramebusSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        if self.settings().bus.is_none() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("no bus: set the `bus` property (framebussink bus=name)")
            ));
        }
        self.frames.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
        self.readers_met.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Dropping the writer closes the bus: readers learn at once.
        *self.state() = None;
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let fmt = caps::to_spec(caps).map_err(|e| {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{e}"));
            gst::loggable_error!(CAT, "{e}")
        })?;
        let mut state = self.state();
        if let Some(s) = state.as_mut() {
            if s.spec == fmt.spec {
                s.info = fmt.info;
                return Ok(());
            }
            gst::info!(
                CAT,
                imp = self,
                "new format {:?}: the bus is created again",
                fmt.spec
            );
        }
        // The old bus first: the new one takes its name.
        *state = None;
        match self.create(fmt) {
            Ok(s) => {
                *state = Some(s);
                drop(state);
                // The bus exists: readers can attach while the first frame
                // waits for them (once per start).
                self.wait_for_readers()
                    .map(|_| ())
                    .map_err(|e| gst::loggable_error!(CAT, "wait-for-readers: {e:?}"))
            }
            Err(e) => {
                let text = format!("{e:?}");
                self.post_error_message(e);
                Err(gst::loggable_error!(CAT, "{text}"))
            }
        }
    }

    /// `wait-for-readers` is waited for in `set_caps`, before the first
    /// frame prerolls (so a non-live pipeline's clock starts after it and
    /// no frame is late); this only covers a first frame without caps.
    fn prepare(&self, _buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.wait_for_readers()
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.store(true, Ordering::Release);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.flushing.store(false, Ordering::Release);
        Ok(())
    }

    /// Upstream may hand over frames with padded rows or planes where it
    /// likes: the copy into the slot reads them through their
    /// `GstVideoMeta`, so no element has to repack them first.
    fn propose_allocation(
        &self,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        query.add_allocation_meta::<gst_video::VideoMeta>(None);
        self.parent_propose_allocation(query)
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (written, wants_keyframe) = {
            let mut guard = self.state();
            let state = guard.as_mut().ok_or(gst::FlowError::NotNegotiated)?;
            let written = self.write(state, buffer).map_err(|e| {
                self.post_error_message(e);
                gst::FlowError::Error
            })?;
            let requests = state.writer.keyframe_requests();
            let wants = requests > state.keyframe_requests;
            state.keyframe_requests = requests;
            (written, wants && state.spec.format == PixelFormat::H264)
        };
        if written {
            self.frames.fetch_add(1, Ordering::Relaxed);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if wants_keyframe {
            gst::debug!(CAT, imp = self, "a reader asked for a keyframe");
            let ev = gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            self.obj().sink_pad().push_event(ev);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_config_from_a_keyframe() {
        let au = [
            0, 0, 0, 1, 0x09, 0xf0, // AUD
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xaa, // SPS: baseline, level 3.1
            0, 0, 0, 1, 0x68, 0xce, 0x3c, // PPS
            0, 0, 1, 0x65, 0x88, 0x84, // IDR slice
        ];
        let c = h264_config(&au).unwrap();
        assert_eq!(c.profile_level, 0x42c01f);
        assert_eq!(
            c.config,
            [0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xaa, 0, 0, 0, 1, 0x68, 0xce, 0x3c]
        );
        assert_eq!(c.time_base, (1, 90_000));
        assert!(h264_config(&[0, 0, 1, 0x41, 0x9a]).is_none());
    }

    #[test]
    fn planes_copy_across_strides() {
        let src: Vec<u8> = (0..24).collect(); // 3 rows of 8, 6 bytes each used
        let mut dst = vec![0u8; 18];
        copy_plane(&mut dst, 6, &src, 8, 3, 6);
        assert_eq!(
            dst,
            [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 16, 17, 18, 19, 20, 21]
        );
        let mut same = vec![0u8; 24];
        copy_plane(&mut same, 8, &src, 8, 3, 6);
        assert_eq!(same, src);
    }
}
