//! A process's output, one line at a time, read on a thread of its own. A line a search
//! passed over without using can be handed back, so the next search still sees it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// The lines of one output stream.
pub struct Lines {
    rx: Receiver<String>,
    /// Lines handed back, read before the channel's.
    back: RefCell<VecDeque<String>>,
}

impl Lines {
    /// Reads `stream` on a new thread until it ends.
    pub fn of(stream: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines {
            rx,
            back: RefCell::default(),
        }
    }

    /// The next line, waiting at most `wait`.
    pub fn recv_timeout(&self, wait: Duration) -> Result<String, RecvTimeoutError> {
        if let Some(line) = self.back.borrow_mut().pop_front() {
            return Ok(line);
        }
        self.rx.recv_timeout(wait)
    }

    /// The lines printed so far and not yet read, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = String> + '_ {
        let back: Vec<String> = self.back.borrow_mut().drain(..).collect();
        back.into_iter().chain(self.rx.try_iter())
    }

    /// Hands `lines` back, in their order, ahead of any line not read yet.
    pub fn unread(&self, lines: Vec<String>) {
        let mut back = self.back.borrow_mut();
        for line in lines.into_iter().rev() {
            back.push_front(line);
        }
    }
}
