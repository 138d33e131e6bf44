//! Copy the raw frames of a bus to stdout, planes back to back without row
//! padding, until stdout closes.
//!
//! Run with: `buscat BUS > frames.raw`

use std::io::Write;
use std::time::Duration;

use framebus::{Reader, ReaderOptions};

fn main() {
    let bus = std::env::args().nth(1).expect("usage: buscat BUS");
    let mut r = Reader::attach(
        &bus,
        ReaderOptions {
            wait: Some(Duration::from_secs(10)),
            shm_dir: None,
        },
    )
    .expect("attach");
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    loop {
        let Ok(f) = r.next(Some(Duration::from_secs(5))) else {
            continue;
        };
        buf.clear();
        for (i, p) in f.spec().planes().iter().enumerate() {
            let plane = f.plane(i).expect("plane");
            for row in plane.chunks(p.stride as usize).take(p.rows as usize) {
                buf.extend_from_slice(&row[..p.row_bytes as usize]);
            }
        }
        drop(f);
        if out.write_all(&buf).and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}
