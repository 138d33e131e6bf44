//! GStreamer elements for framebus (docs/gstreamer.md):
//!
//! - [`FramebusSrc`] (`framebussrc bus=cam0`): a live source whose buffers
//!   are the bus's slots, held in place while GStreamer holds them;
//! - [`FramebusSink`] (`framebussink bus=name`): writes any pipeline's
//!   frames into a bus.
//!
//! Built as `libgstframebus.so`; GStreamer finds it through
//! `GST_PLUGIN_PATH` (`target/release` after `cargo build --release`) or in
//! its plugin directory. [`plugin_register_static`] registers both
//! elements in a program that links this crate.

use gst::glib;
use gst::prelude::*;

mod caps;
mod sink;
mod src;

pub use caps::unix_capture_ns;
pub use src::ProducerGone;

glib::wrapper! {
    /// `framebussrc`.
    pub struct FramebusSrc(ObjectSubclass<src::FramebusSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

glib::wrapper! {
    /// `framebussink`.
    pub struct FramebusSink(ObjectSubclass<sink::FramebusSink>)
        @extends gst_base::BaseSink, gst::Element, gst::Object;
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    ProducerGone::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "framebussrc",
        gst::Rank::NONE,
        FramebusSrc::static_type(),
    )?;
    gst::Element::register(
        Some(plugin),
        "framebussink",
        gst::Rank::NONE,
        FramebusSink::static_type(),
    )
}

gst::plugin_define!(
    framebus,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    env!("CARGO_PKG_VERSION"),
    // GStreamer accepts only the licenses it knows; the crate is MIT OR
    // Apache-2.0.
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY")
);
