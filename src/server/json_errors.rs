//! The answers hyper writes by itself, to a request it cannot parse (400), whose target is too
//! long (414) or whose header section is too large (431), carry no body. Every other answer of
//! the daemon is JSON `{"error": …}`; this wrapper of a connection's stream gives those three the
//! same shape, so a client (or a platform's delivery log) always reads why.
//!
//! hyper writes such an answer as one buffer holding a bodiless head with `content-length: 0`
//! and no `content-type` (the daemon's own answers always have both a type and a body), then
//! closes the connection. Nothing else is touched.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's stream whose hyper-made error answers are rewritten as JSON.
pub struct JsonErrors<T> {
    inner: T,
    /// The rewritten answer being written, how much of it is written, and the length of the
    /// buffer it replaces (reported as written once all of it is).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> JsonErrors<T> {
    pub fn new(inner: T) -> Self {
        JsonErrors {
            inner,
            pending: None,
        }
    }
}

/// The JSON answer for a bodiless error head written by hyper, `None` for anything else.
fn rewrite(buffer: &[u8]) -> Option<Vec<u8>> {
    let rest = buffer.strip_prefix(b"HTTP/1.")?.get(2..)?;
    let message = match rest.get(..4)? {
        b"400 " => "the request could not be parsed as HTTP",
        b"414 " => "request target too long",
        b"431 " => "request header fields too large",
        _ => return None,
    };
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 2;
    if head_end + 2 != buffer.len() {
        return None;
    }
    let head = &buffer[..head_end];
    let lines: Vec<&[u8]> = head.split(|&b| b == b'\n').collect();
    let is = |line: &[u8], name: &str| {
        line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':'
    };
    if lines.iter().any(|line| is(line, "content-type"))
        || !lines
            .iter()
            .any(|line| is(line, "content-length") && line.trim_ascii_end().ends_with(b": 0"))
    {
        return None;
    }
    let body = serde_json::json!({ "error": message }).to_string();
    let mut answer = Vec::with_capacity(buffer.len() + body.len() + 64);
    for line in lines.iter().filter(|line| !line.is_empty()) {
        if is(line, "content-length") {
            continue;
        }
        answer.extend_from_slice(line);
        answer.push(b'\n');
    }
    answer.extend_from_slice(b"content-type: application/json\r\n");
    answer.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    answer.extend_from_slice(body.as_bytes());
    Some(answer)
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            match rewrite(buf) {
                Some(answer) => this.pending = Some((answer, 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        let (answer, written, replaced) = this.pending.as_mut().expect("set above");
        while *written < answer.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let replaced = *replaced;
        this.pending = None;
        Poll::Ready(Ok(replaced))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each answer as one buffer, which `rewrite` can read whole.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bodiless_431_from_hyper_becomes_json() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 14:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(rewrite(head).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        assert_eq!(body, r#"{"error":"request header fields too large"}"#);
    }

    #[test]
    fn the_daemons_own_answers_and_other_statuses_are_left_alone() {
        for buffer in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n{\"error\":1}\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\nmore",
            b"not http at all",
        ] {
            assert!(rewrite(buffer).is_none(), "{}", String::from_utf8_lossy(buffer));
        }
    }
}
