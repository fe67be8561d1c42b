//! The HTTP/1.1 server: the accept loop, one thread per connection, and the few rules that
//! keep it answering whatever its clients do.
//!
//! - A connection's thread reads request heads and writes answers; it waits for the client at
//!   most [`HEAD_TIMEOUT`] for a whole head, and gives an answer [`WRITE_TIMEOUT`] plus a
//!   second per [`MIN_WRITE_RATE`] bytes past its first [`WRITE_SLACK`] to be taken, then hangs
//!   up. At most [`MAX_CONNECTIONS`] are open at once; one more is answered 503.
//! - The work of a request (reading files, rebuilding audio) is done by at most `workers`
//!   connections at a time, and never while waiting for a client: a client that does not read
//!   its answer holds its own connection's thread, not a worker. What needs no worker (the
//!   pages, their script and style) is answered on the connection's thread, at once.
//! - A head longer than [`MAX_HEAD`] is answered 431 and never held whole. Request bodies are
//!   never read (nothing served takes one): a request that announces one is answered and its
//!   connection closed.
//! - An accept that fails (out of file descriptors, most likely) is tried again after a pause:
//!   connections that close give them back, and those waiting meanwhile stay queued.
//!
//! Request heads are parsed by `httparse`; the rest is here.

use std::io::{self, BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Longest request head taken, in bytes.
const MAX_HEAD: usize = 64 << 10;

/// Most header fields a request head may have.
const MAX_HEADERS: usize = 100;

/// How long a client has to send a whole request head, from the moment the server waits for
/// it (after the previous answer on a kept-alive connection).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client has to take an answer, bar its part past [`WRITE_SLACK`]. A deadline for
/// the whole answer, not for each write: a client taking a byte now and then would otherwise
/// hold its connection (and the answer's memory) on and on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes of an answer that count for nothing towards its deadline: more than the system's
/// buffers between the server and a client that reads nothing can hold.
const WRITE_SLACK: u64 = 16 << 20;

/// Bytes per second an answer is then to be taken at, at least: each gives its deadline time.
const MIN_WRITE_RATE: u64 = 1 << 20;

/// Connections open at once.
const MAX_CONNECTIONS: usize = 128;

/// Pause before accepting again after accept failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// What is read, at most, of what a client still sends after its connection's last answer,
/// and for how long: enough for that answer to reach it before the connection is closed.
const LINGER_BYTES: usize = 1 << 20;
const LINGER: Duration = Duration::from_secs(2);

/// One request: its method, its target as sent (path and query, still percent-encoded) and its
/// header fields.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub target: String,
    headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header field `name` (any case), if the request has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Writes a body's bytes.
pub type WriteBody = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// What an answer carries.
pub enum Body {
    /// Bytes made for this answer.
    Bytes(Vec<u8>),
    /// `len` bytes that `write` writes, from data the handler keeps (a cached clip), so that
    /// an answer is not a copy of it.
    Stream { len: u64, write: WriteBody },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::Stream { len, .. } => *len,
        }
    }
}

/// An answer: status, header fields, body. `Content-Length` and `Connection` are the
/// server's to add.
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

impl Response {
    pub fn new(status: u16, body: Body) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// With header field `name: value`; a control character in `value` (a line break that
    /// would end the field) becomes `_`.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let value = value
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
        self.headers.push((name.to_owned(), value));
        self
    }

    /// A JSON `{"error": message}` answer of the server's own, for a request it cannot take.
    fn refusal(status: u16, message: &str) -> Self {
        let body = format!("{{\"error\":\"{message}\"}}");
        Response::new(status, Body::Bytes(body.into_bytes()))
            .with_header("Content-Type", "application/json")
            .with_header("Cache-Control", "no-store")
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// What answers requests.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// What answers the requests that need no worker, on the connection's thread; `None` for the
/// others.
pub type QuickHandler = dyn Fn(&Request) -> Option<Response> + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    quick: Box<QuickHandler>,
    /// Workers free to compute an answer, and the signal that one was freed.
    free_workers: Mutex<usize>,
    worker_freed: Condvar,
    connections: AtomicUsize,
}

/// A worker taken, given back when dropped (a panic included).
struct Worker<'a>(&'a Shared);

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        *self.0.free_workers() += 1;
        self.0.worker_freed.notify_one();
    }
}

/// An open connection counted, uncounted when dropped.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    fn free_workers(&self) -> std::sync::MutexGuard<'_, usize> {
        self.free_workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn worker(&self) -> Worker<'_> {
        let mut free = self.free_workers();
        while *free == 0 {
            free = self
                .worker_freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        Worker(self)
    }

    /// The answer to `request`: at once if it needs no worker, else computed by a worker; a
    /// panic in either is a 500, and the server goes on.
    fn answer(&self, request: &Request) -> Response {
        catch_unwind(AssertUnwindSafe(|| {
            (self.quick)(request).unwrap_or_else(|| {
                let _worker = self.worker();
                (self.handler)(request)
            })
        }))
        .unwrap_or_else(|_| {
            Response::refusal(500, "the server failed on this request; it goes on serving")
        })
    }
}

/// Serves the connections `listener` accepts with `quick`, or failing it `handler`, computing
/// at most `workers` of `handler`'s answers at a time, until the process ends.
pub fn serve(
    listener: TcpListener,
    workers: usize,
    quick: Box<QuickHandler>,
    handler: Box<Handler>,
) -> ! {
    let shared = Arc::new(Shared {
        handler,
        quick,
        free_workers: Mutex::new(workers.max(1)),
        worker_freed: Condvar::new(),
        connections: AtomicUsize::new(0),
    });
    // The error accepting fails with, while it does: said once, not at every try.
    let mut failing: Option<ErrorKind> = None;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if failing.take().is_some() {
                    eprintln!("segmentrecorder-view: accepting connections again");
                }
                admit(&shared, stream);
            }
            // The connection went before it was accepted: nothing wrong with the server.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::ConnectionReset
                ) => {}
            Err(e) => {
                if failing != Some(e.kind()) {
                    eprintln!(
                        "segmentrecorder-view: cannot accept connections: {e}; trying again \
                         every {} ms",
                        ACCEPT_RETRY.as_millis()
                    );
                    failing = Some(e.kind());
                }
                thread::sleep(ACCEPT_RETRY);
            }
        }
    }
}

/// Serves `stream` on a thread of its own, or answers 503 if there are too many.
fn admit(shared: &Arc<Shared>, stream: TcpStream) {
    if shared.connections.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
        shared.connections.fetch_sub(1, Ordering::Relaxed);
        refuse(stream, "too many connections: try again");
        return;
    }
    let slot = Slot(shared.clone());
    // If the thread cannot start, the closure goes, and the slot and the stream with it.
    let spawned = thread::Builder::new()
        .name("connection".into())
        .spawn(move || {
            // The slot itself, not only its field: uncounted when the connection ends.
            let slot = slot;
            connection(stream, &slot.0);
        });
    if let Err(e) = spawned {
        eprintln!("segmentrecorder-view: cannot start a thread for a connection: {e}");
    }
}

/// Answers 503 on the accepting thread, which must never wait for a client: a fresh
/// connection's send buffer holds so short an answer, and what does not fit is left out.
fn refuse(stream: TcpStream, message: &str) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let response = Response::refusal(503, message).with_header("Retry-After", "1");
    let mut head = Vec::new();
    let _ = write_head(&mut head, &response, true);
    if let Body::Bytes(body) = &response.body {
        head.extend_from_slice(body);
    }
    let mut stream = stream;
    let _ = stream.write(&head);
    let _ = stream.shutdown(Shutdown::Write);
    // What the client sent already, so that closing does not reset the connection and drop
    // the answer on the way.
    let _ = stream.read(&mut [0u8; 4096]);
}

/// Why a request head is not taken.
enum Refusal {
    TooLarge,
    Malformed,
    TimedOut,
}

impl Refusal {
    fn response(&self) -> Response {
        match self {
            Refusal::TooLarge => Response::refusal(
                431,
                &format!("the request head is longer than {} bytes", MAX_HEAD),
            ),
            Refusal::Malformed => Response::refusal(400, "not an HTTP/1.1 request"),
            Refusal::TimedOut => Response::refusal(
                408,
                &format!(
                    "the request head did not come within {} s",
                    HEAD_TIMEOUT.as_secs()
                ),
            ),
        }
    }
}

/// The requests of one connection, answered in order, until either side closes it.
fn connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    // Bytes read beyond the head of the request being answered: the next one's start.
    let mut pending = Vec::new();
    loop {
        let (request, keep_alive) = match read_head(&stream, &mut pending) {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(refusal) => {
                if write_response(&stream, refusal.response(), false, false).is_ok() {
                    linger(stream);
                }
                return;
            }
        };
        let head_only = request.method == "HEAD";
        let response = shared.answer(&request);
        if write_response(&stream, response, head_only, keep_alive).is_err() {
            return;
        }
        if !keep_alive {
            linger(stream);
            return;
        }
    }
}

/// The end of the first empty line in `bytes`, looking from `from` on: where a head ends.
fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let from = from.min(bytes.len());
    bytes[from..].iter().enumerate().find_map(|(i, &b)| {
        let at = from + i;
        (b == b'\n' && (bytes[..at].ends_with(b"\n") || bytes[..at].ends_with(b"\n\r")))
            .then_some(at + 1)
    })
}

/// The next request of `stream` and whether its connection stays open after the answer, or
/// `None` if the client closed it or sent nothing in time between requests. `pending` holds
/// what was read beyond the previous head, and is left holding what is read beyond this one.
fn read_head(
    mut stream: &TcpStream,
    pending: &mut Vec<u8>,
) -> Result<Option<(Request, bool)>, Refusal> {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    // Where the search for the head's end goes on from: each byte is looked at once.
    let mut searched = 0;
    let end = loop {
        // Empty lines before a request are allowed, and skipped.
        let blank = pending
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if blank > 0 {
            pending.drain(..blank);
            searched = 0;
        }
        if let Some(end) = head_end(pending, searched) {
            break end;
        }
        searched = pending.len();
        if pending.len() >= MAX_HEAD {
            return Err(Refusal::TooLarge);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return if pending.is_empty() {
                Ok(None)
            } else {
                Err(Refusal::TimedOut)
            };
        }
        // Never more than the head may take: a client sending on and on is not held whole.
        let mut chunk = [0u8; 8 << 10];
        let room = (MAX_HEAD - pending.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Ok(None),
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return if pending.is_empty() {
                    Ok(None)
                } else {
                    Err(Refusal::TimedOut)
                };
            }
            Err(_) => return Ok(None),
        }
    };
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    match parsed.parse(&pending[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::TooLarge),
        _ => return Err(Refusal::Malformed),
    }
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(Refusal::Malformed);
    };
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    // The absolute form (`http://host/path`), which proxies send, names the same path.
    let target = match target.split_once("://") {
        Some((_, rest)) if !target.starts_with('/') => {
            rest.find('/').map_or("/", |i| &rest[i..]).to_owned()
        }
        _ => target.to_owned(),
    };
    let request = Request {
        method: method.to_owned(),
        target,
        headers,
    };
    pending.drain(..end);
    // A body is never read, so the connection cannot go on after one: its bytes would be
    // taken for the next request.
    let body = request.header("Transfer-Encoding").is_some()
        || request
            .header("Content-Length")
            .is_some_and(|n| n.trim() != "0");
    let close = request.header("Connection").is_some_and(|c| {
        c.split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("close"))
    });
    Ok(Some((request, version == 1 && !body && !close)))
}

fn write_head(out: &mut impl Write, response: &Response, close: bool) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    )?;
    for (name, value) in &response.headers {
        write!(out, "{name}: {value}\r\n")?;
    }
    write!(out, "Content-Length: {}\r\n", response.body.len())?;
    if close {
        out.write_all(b"Connection: close\r\n")?;
    }
    out.write_all(b"\r\n")
}

/// A client's side of a connection for one answer, which fails once the client has taken too
/// little of it too slowly: [`WRITE_TIMEOUT`] after the answer's start, plus a second per
/// [`MIN_WRITE_RATE`] bytes written past [`WRITE_SLACK`].
struct Paced<'a> {
    stream: &'a TcpStream,
    start: Instant,
    written: u64,
}

impl Write for Paced<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let earned = Duration::from_secs_f64(
            self.written.saturating_sub(WRITE_SLACK) as f64 / MIN_WRITE_RATE as f64,
        );
        let left = (self.start + WRITE_TIMEOUT + earned).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                ErrorKind::TimedOut,
                "the client takes its answer too slowly",
            ));
        }
        self.stream.set_write_timeout(Some(left))?;
        let n = self.stream.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes `response` (its head only if `head_only`); an error if the client is gone or takes
/// it too slowly (see [`Paced`]).
fn write_response(
    stream: &TcpStream,
    response: Response,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let paced = Paced {
        stream,
        start: Instant::now(),
        written: 0,
    };
    let mut out = BufWriter::with_capacity(64 << 10, paced);
    write_head(&mut out, &response, !keep_alive)?;
    if !head_only {
        match response.body {
            Body::Bytes(bytes) => out.write_all(&bytes)?,
            Body::Stream { write, .. } => write(&mut out)?,
        }
    }
    out.flush()
}

/// Closes a connection after its last answer: first what is still coming is read for a
/// moment, since closing with unread bytes would reset the connection and could lose the
/// answer on the way to the client.
fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut drained = 0;
    let mut sink = [0u8; 8 << 10];
    while drained < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_ends_at_its_first_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\nrest", 0), Some(21));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        // Looking on from where the last search stopped finds an end split across reads.
        let head = b"GET / HTTP/1.1\r\nA: b\r\n\r\n";
        assert_eq!(head_end(head, head.len() - 2), Some(head.len()));
    }
}
