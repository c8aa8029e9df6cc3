//! SPDY/3.1 flow-control accounting, without IO: a send window that data spends and
//! WINDOW_UPDATE (or a SETTINGS change of the initial size) grows, and a receive window
//! that says when enough has been consumed to grant the peer more.

/// The initial window of every stream and of the session (64 KiB).
pub const DEFAULT_WINDOW: u32 = 64 << 10;
/// The largest window the protocol allows.
pub const MAX_WINDOW: i64 = 0x7fff_ffff;

/// A window grew beyond [`MAX_WINDOW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("flow-control window would exceed 2^31-1 bytes")]
pub struct WindowOverflow;

/// What this side may still send. It may go negative when the peer shrinks the initial
/// window below what is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    available: i64,
}

impl SendWindow {
    /// A window of `size` bytes.
    pub fn new(size: u32) -> Self {
        Self {
            available: i64::from(size),
        }
    }

    /// Bytes that may be sent now (0 when exhausted or negative).
    pub fn available(&self) -> usize {
        usize::try_from(self.available.max(0)).unwrap_or(usize::MAX)
    }

    /// Spends up to `wanted` bytes and returns how many may be sent.
    pub fn take(&mut self, wanted: usize) -> usize {
        let n = wanted.min(self.available());
        self.available -= i64::try_from(n).unwrap_or(i64::MAX);
        n
    }

    /// Spends `n` bytes whatever the window says (a peer that ignores flow control).
    pub fn spend(&mut self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.available = self.available.saturating_sub(n).max(-MAX_WINDOW);
    }

    /// Grows (or, for a SETTINGS change, shrinks) the window by `delta`.
    pub fn adjust(&mut self, delta: i64) -> Result<(), WindowOverflow> {
        let next = self.available.saturating_add(delta);
        if next > MAX_WINDOW {
            return Err(WindowOverflow);
        }
        self.available = next;
        Ok(())
    }
}

/// What the peer may still send, and what has been consumed but not yet granted back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveWindow {
    size: u32,
    outstanding: i64,
    unacked: u32,
}

impl ReceiveWindow {
    /// A window of `size` bytes (at least 2, so that half of it is something).
    pub fn new(size: u32) -> Self {
        let size = size.max(2);
        Self {
            size,
            outstanding: i64::from(size),
            unacked: 0,
        }
    }

    /// Accounts for `n` received bytes; false when the peer overran the window.
    pub fn received(&mut self, n: usize) -> bool {
        self.outstanding -= i64::try_from(n).unwrap_or(i64::MAX);
        self.outstanding >= 0
    }

    /// Accounts for `n` consumed bytes; returns the WINDOW_UPDATE delta to send once half
    /// the window has been consumed.
    pub fn consumed(&mut self, n: usize) -> Option<u32> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.unacked = self.unacked.saturating_add(n);
        if self.unacked < self.size / 2 {
            return None;
        }
        let delta = self.unacked.min(0x7fff_ffff);
        self.unacked -= delta;
        self.outstanding = (self.outstanding + i64::from(delta)).min(i64::from(self.size));
        Some(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sending_spends_and_updates_refill() {
        let mut window = SendWindow::new(100);
        assert_eq!(window.take(60), 60);
        assert_eq!(window.take(60), 40);
        assert_eq!(window.take(1), 0);
        window.adjust(30).unwrap();
        assert_eq!(window.available(), 30);
        // A smaller initial window can take it below zero; sending waits until it recovers.
        window.adjust(-50).unwrap();
        assert_eq!(window.available(), 0);
        window.adjust(25).unwrap();
        assert_eq!(window.available(), 5);
        assert_eq!(window.adjust(MAX_WINDOW), Err(WindowOverflow));
        window.spend(1000);
        assert_eq!(window.available(), 0);
    }

    #[test]
    fn receiving_grants_back_after_half_the_window() {
        let mut window = ReceiveWindow::new(100);
        assert!(window.received(80));
        assert_eq!(window.consumed(30), None);
        assert_eq!(window.consumed(30), Some(60));
        assert!(window.received(70));
        assert!(!window.received(20), "the peer overran the window");
        assert_eq!(window.consumed(u32::MAX as usize), Some(0x7fff_ffff));
    }
}
