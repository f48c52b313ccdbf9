//! The terminal `top` draws in: raw keys, the alternate screen, its size; all put
//! back as they were when `Raw` drops.

use std::io::Write;
use std::time::Duration;

/// The terminal in raw mode (no echo, keys one by one, Ctrl-C a key) on the
/// alternate screen, until dropped.
pub struct Raw {
    old: libc::termios,
}

impl Raw {
    /// Enters raw mode; fails where stdin is not a terminal.
    pub fn enter() -> std::io::Result<Raw> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails without
        // touching it.
        let mut old: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid pointer to a termios.
        if unsafe { libc::tcgetattr(0, &mut old) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut raw = old;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        // SAFETY: fd 0 and a valid termios derived from the one it returned.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut o = std::io::stdout();
        let _ = o.write_all(b"\x1b[?1049h\x1b[?25l");
        let _ = o.flush();
        Ok(Raw { old })
    }

    /// Draws `text` as the whole screen.
    pub fn draw(&self, text: &str) {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(b"\x1b[H\x1b[2J");
        // Raw mode leaves output processing on, but a bare line feed is explicit.
        let _ = o.write_all(text.replace('\n', "\r\n").as_bytes());
        let _ = o.flush();
    }

    /// The next key pressed within `timeout`, if any.
    pub fn key(&self, timeout: Duration) -> Option<u8> {
        let mut fds = [libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) } <= 0 {
            return None;
        }
        let mut b = [0u8; 1];
        // SAFETY: reads at most one byte into `b`.
        let n = unsafe { libc::read(0, b.as_mut_ptr().cast(), 1) };
        (n == 1).then_some(b[0])
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let mut o = std::io::stdout();
        let _ = o.write_all(b"\x1b[?25h\x1b[?1049l");
        let _ = o.flush();
        // SAFETY: fd 0 and the termios it had before.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.old) };
    }
}

/// The terminal's width in columns (80 where it cannot say).
pub fn width() -> usize {
    // SAFETY: winsize is plain data; TIOCGWINSZ fills it or fails.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: fd 1 and a valid pointer to a winsize.
    let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        80
    }
}
