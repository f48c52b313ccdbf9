//! What the kernel gives the layers above: sealed memfd regions ([`memfd`]), fd
//! passing over unix sockets ([`fdpass`]), doorbells and wakers (`doorbell`), and the
//! owned listening socket of a producer (`listen`).

pub(crate) mod doorbell;
pub mod fdpass;
internal_mods! {
    listen;
}
pub mod memfd;
