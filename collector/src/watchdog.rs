//! Deadlines on a connection's bytes, for both listeners: a peer that holds a connection open
//! and moves nothing is cut, so silent connections cannot pile up until they hold every slot.
//!
//! [`Watched`] wraps a connection's stream. It fails the next read with `TimedOut` (which makes
//! hyper drop the connection) once its deadline passes: either `idle` after the last byte moved
//! in either direction, or a fixed instant (a certificate-less gRPC connection's whole life),
//! or [`LINGER`] after its owner marked it [`Finish::finish`]ed (its one call was answered).
//! An expiry by deadline is counted and logged as a [`crate::events::ConnectionRefused`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::events::{ConnectionRefused, Listener};

/// How long a finished connection stays open so its last answer reaches the peer.
pub const LINGER: Duration = Duration::from_secs(1);

/// When a watched connection ends.
#[derive(Debug, Clone, Copy)]
pub enum Deadline {
    /// This long after the last byte moved.
    Idle(Duration),
    /// This long after the connection was handed over, whatever it does.
    Fixed(Duration),
}

/// Set by whoever decides a connection has done all it may; the connection then ends after
/// [`LINGER`] (or its own deadline, if sooner).
#[derive(Debug, Clone, Default)]
pub struct Finish(Arc<AtomicBool>);

impl Finish {
    pub fn finish(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_finished(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A stream that ends itself at its deadline.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    deadline: Deadline,
    /// The deadline timer; for [`Deadline::Idle`] it may run early and is re-armed lazily from
    /// `last_moved`, so moving bytes costs no timer update.
    sleep: Pin<Box<Sleep>>,
    last_moved: Instant,
    finish: Option<Finish>,
    finished: bool,
    listener: Listener,
    expired: bool,
}

impl<S> Watched<S> {
    pub fn new(inner: S, deadline: Deadline, listener: Listener) -> Self {
        let now = Instant::now();
        let span = match deadline {
            Deadline::Idle(d) | Deadline::Fixed(d) => d,
        };
        Self {
            inner,
            deadline,
            sleep: Box::pin(tokio::time::sleep_until(now + span)),
            last_moved: now,
            finish: None,
            finished: false,
            listener,
            expired: false,
        }
    }

    /// Ends the connection [`LINGER`] after `finish` is set.
    pub fn with_finish(mut self, finish: Finish) -> Self {
        self.finish = Some(finish);
        self
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    fn moved(&mut self, bytes: usize) {
        if bytes > 0 && matches!(self.deadline, Deadline::Idle(_)) && !self.finished {
            self.last_moved = Instant::now();
        }
    }

    /// Ready once the deadline has passed (and the refusal has been counted).
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.expired {
            return true;
        }
        if !self.finished && self.finish.as_ref().is_some_and(Finish::is_finished) {
            self.finished = true;
            let linger = Instant::now() + LINGER;
            if linger < self.sleep.deadline() {
                self.sleep.as_mut().reset(linger);
            }
        }
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if let (Deadline::Idle(idle), false) = (self.deadline, self.finished) {
                let due = self.last_moved + idle;
                if due > Instant::now() {
                    self.sleep.as_mut().reset(due);
                    continue;
                }
            }
            break;
        }
        self.expired = true;
        // A connection whose one call was answered ends as planned; only deadlines count.
        if !self.finished {
            let reason = match self.deadline {
                Deadline::Idle(_) => "idle_timeout",
                Deadline::Fixed(_) => "certless_timeout",
            };
            ConnectionRefused { listener: self.listener, reason, message: "" }.emit();
        }
        true
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection deadline passed")
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.poll_expired(cx) {
            return Poll::Ready(Err(timed_out()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let read = buf.filled().len() - before;
            self.moved(read);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired {
            return Poll::Ready(Err(timed_out()));
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.moved(n);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.expired {
            return Poll::Ready(Err(timed_out()));
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.moved(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
