//! The terminal side of `cachectl top`: raw mode and the alternate screen for as long as the view
//! runs (restored on every way out, panics included), drawing a frame, and a thread that turns key
//! presses into [`Input`]s.

use std::io::{self, Stdout, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, queue, style, terminal};
use tokio::sync::mpsc;

/// What the keyboard asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// `q`, `Q`, `Esc` or Ctrl-C.
    Quit,
    /// The terminal was resized: draw the last frame again at once.
    Redraw,
}

/// The terminal in raw mode on the alternate screen; restored when dropped.
pub(crate) struct Screen {
    out: Stdout,
}

impl Screen {
    /// Switches to the alternate screen, raw mode, cursor hidden.
    pub(crate) fn enter() -> io::Result<Self> {
        terminal::enable_raw_mode()?;
        let mut out = io::stdout();
        if let Err(e) = crossterm::execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
            let _ = terminal::disable_raw_mode();
            return Err(e);
        }
        Ok(Self { out })
    }

    /// The terminal's width and height.
    pub(crate) fn size() -> (usize, usize) {
        terminal::size()
            .map(|(w, h)| (usize::from(w), usize::from(h)))
            .unwrap_or((120, 40))
    }

    /// Draws `lines` from the top-left corner, clearing what the previous frame left.
    pub(crate) fn draw(&mut self, lines: &[String]) -> io::Result<()> {
        let (_, height) = Self::size();
        for (row, line) in lines.iter().take(height).enumerate() {
            let row = u16::try_from(row).unwrap_or(u16::MAX);
            queue!(
                self.out,
                cursor::MoveTo(0, row),
                style::Print(line),
                terminal::Clear(terminal::ClearType::UntilNewLine)
            )?;
        }
        let below = u16::try_from(lines.len().min(height)).unwrap_or(u16::MAX);
        queue!(
            self.out,
            cursor::MoveTo(0, below),
            terminal::Clear(terminal::ClearType::FromCursorDown)
        )?;
        self.out.flush()
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // Best effort: there is nowhere to report a failure to restore the terminal.
        let _ = crossterm::execute!(self.out, cursor::Show, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
    }
}

/// Reads keys on a thread of its own (crossterm's reads block) until `stop` is set or the
/// receiver is gone. The thread wakes every 100 ms to check.
pub(crate) fn keys() -> (mpsc::UnboundedReceiver<Input>, Arc<AtomicBool>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = Arc::clone(&stop);
    std::thread::spawn(move || {
        while !stop_flag.load(Ordering::Relaxed) && !tx.is_closed() {
            match event::poll(Duration::from_millis(100)) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => {
                    // No terminal to read from: nothing more will come.
                    return;
                }
            }
            let input = match event::read() {
                Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => match k.code {
                    KeyCode::Char('q' | 'Q') | KeyCode::Esc => Some(Input::Quit),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        Some(Input::Quit)
                    }
                    _ => None,
                },
                Ok(Event::Resize(..)) => Some(Input::Redraw),
                Ok(_) => None,
                Err(_) => return,
            };
            if let Some(input) = input {
                if tx.send(input).is_err() {
                    return;
                }
            }
        }
    });
    (rx, stop)
}
