//! Request bodies, read asynchronously and held to their bounds.
//!
//! A small body (JSON, a signature) is [`collect`]ed into memory before its
//! handler takes a blocking thread, so a client that sends slowly costs a
//! buffer, never a thread. An upload is [`feed`]ed through a bounded channel
//! to a [`ChannelReader`] that the upload handler reads on its blocking
//! thread, hashing and writing as the bytes arrive. Either way the client
//! must keep the minimum rate over every window and never stall longer than
//! `io_timeout`; a collected body must also be complete by the request's
//! deadline. A cut body is a [`BodyError`], which its handler answers with
//! 408 or 413.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;

use super::rate::{Meter, MinRate};
use crate::api::request::BodyError;

/// How a body must move.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub min_rate: MinRate,
    pub io_timeout: Duration,
    /// The whole body must be in by then.
    pub deadline: Option<Instant>,
}

/// Reads a whole body of at most `max` bytes.
pub async fn collect(body: &mut Incoming, max: u64, pace: Pace) -> Result<Bytes, BodyError> {
    let mut meter = Meter::new(pace.min_rate, Instant::now());
    let mut out = BytesMut::new();
    while let Some(data) = next_data(body, &mut meter, pace).await? {
        if out.len() as u64 + data.len() as u64 > max {
            return Err(BodyError::TooLarge(max));
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

/// What travels from [`feed`] to the [`ChannelReader`].
pub enum Piece {
    Data(Bytes),
    /// The body ended cleanly.
    End,
    Failed(BodyError),
}

/// Sends a body down `tx` as it arrives. Ends when the body does, when it
/// fails (the reader is told why), or when the reader is gone.
pub async fn feed(
    mut body: Incoming,
    tx: mpsc::Sender<Piece>,
    pace: Pace,
) -> Result<(), BodyError> {
    let mut meter = Meter::new(pace.min_rate, Instant::now());
    loop {
        let piece = match next_data(&mut body, &mut meter, pace).await {
            Ok(Some(data)) => Piece::Data(data),
            Ok(None) => Piece::End,
            Err(e) => {
                let _ = tx.send(Piece::Failed(e.clone())).await;
                return Err(e);
            }
        };
        let end = matches!(piece, Piece::End);
        let waiting = Instant::now();
        if tx.send(piece).await.is_err() || end {
            return Ok(());
        }
        // Time spent waiting on the handler (the disk) is ours, not the client's.
        meter.pause(waiting.elapsed());
    }
}

/// The next data frame of `body`; `None` at its end.
async fn next_data(
    body: &mut Incoming,
    meter: &mut Meter,
    pace: Pace,
) -> Result<Option<Bytes>, BodyError> {
    let mut last_progress = Instant::now();
    loop {
        let now = Instant::now();
        if !meter.check(now, true) {
            return Err(too_slow(pace));
        }
        if now >= last_progress + pace.io_timeout {
            return Err(BodyError::TooSlow(format!(
                "request body stalled for {}",
                humantime::format_duration(pace.io_timeout)
            )));
        }
        let mut wake = meter.window_end().min(last_progress + pace.io_timeout);
        if let Some(deadline) = pace.deadline {
            if now >= deadline {
                return Err(BodyError::TooSlow(
                    "request not complete within the request timeout".into(),
                ));
            }
            wake = wake.min(deadline);
        }
        let Ok(frame) = tokio::time::timeout_at(wake.into(), body.frame()).await else {
            continue;
        };
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(BodyError::Broken(e.to_string())),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers: read and dropped
                };
                meter.record(data.len());
                last_progress = Instant::now();
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

fn too_slow(pace: Pace) -> BodyError {
    BodyError::TooSlow(format!(
        "request body slower than the minimum rate of {} bytes/s over {}",
        pace.min_rate.bytes_per_sec,
        humantime::format_duration(pace.min_rate.window)
    ))
}

/// A streamed body as the blocking reader a handler expects.
pub struct ChannelReader {
    rx: mpsc::Receiver<Piece>,
    chunk: Bytes,
    ended: bool,
}

impl ChannelReader {
    pub fn new(rx: mpsc::Receiver<Piece>) -> ChannelReader {
        ChannelReader {
            rx,
            chunk: Bytes::new(),
            ended: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Data(data)) => self.chunk = data,
                Some(Piece::End) => self.ended = true,
                Some(Piece::Failed(e)) => return Err(e.into_io()),
                // Gone without an end: the request was abandoned (shutdown,
                // a dropped connection). Never mistake that for the end.
                None => {
                    return Err(BodyError::Broken("the request body was abandoned".into()).into_io())
                }
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
