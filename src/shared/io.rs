//! What an I/O error means for the user (a full disk, or a folder that cannot take writes), and reading lines
//! of input with a bound on what one line may hold.

use std::io::{BufRead, Read};

const EACCES: i32 = 13;
const ENOSPC: i32 = 28;
const EROFS: i32 = 30;

/// The disk is full (`ENOSPC`).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(ENOSPC)
}

/// The folder cannot take writes: read-only, no permission, or full.
pub fn is_unwritable(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(EACCES | ENOSPC | EROFS))
}

/// Hands the heap's freed pages back to the system (glibc keeps them otherwise, in every thread's arena): called
/// after a model load, whose file reading and conversion free tens of megabytes that would stay resident for the
/// life of the process, and after each run.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: a glibc function without preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// One line read by [`read_line_bounded`].
#[derive(Debug, PartialEq, Eq)]
pub enum BoundedLine {
    /// The line is in the buffer, with its line break if it had one.
    Line,
    /// The line was longer than the bound: this many bytes (its line break included) were read and dropped,
    /// never held, and the buffer is empty.
    TooLong(u64),
}

/// Reads the next line of `input` into `buf`, holding at most `max` + 1 bytes of it: a longer line is skipped
/// to its end as it is read. `None` at the end of the input. Memory stays bounded whatever the input's shape.
pub fn read_line_bounded(input: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Option<BoundedLine>> {
    buf.clear();
    let n = input.by_ref().take(max as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    let content = buf.len() - usize::from(buf.ends_with(b"\n"));
    if content <= max {
        return Ok(Some(BoundedLine::Line));
    }
    let mut skipped = buf.len() as u64;
    buf.clear();
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => {
                skipped += at as u64 + 1;
                input.consume(at + 1);
                break;
            }
            None => {
                let len = chunk.len();
                skipped += len as u64;
                input.consume(len);
            }
        }
    }
    Ok(Some(BoundedLine::TooLong(skipped)))
}

/// A size for people: "16.8 MB", "900 bytes".
pub fn size(bytes: u64) -> String {
    if bytes < 1_000 {
        format!("{bytes} bytes")
    } else if bytes < 1_000_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_over_the_bound_are_skipped_whole_and_the_next_ones_read() {
        let big = "x".repeat(100_000);
        let input = format!("short\n{big}\n{big}\nafter\nlast-no-newline");
        // A reader that hands out 4 KB at a time, as a pipe does.
        let mut reader = std::io::BufReader::with_capacity(4096, input.as_bytes());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(line) = read_line_bounded(&mut reader, &mut buf, 1000).unwrap() {
            assert!(buf.capacity() <= 64 * 1024, "never holds a long line");
            got.push(match line {
                BoundedLine::Line => String::from_utf8(buf.clone()).unwrap(),
                BoundedLine::TooLong(n) => format!("too long: {n}"),
            });
        }
        assert_eq!(got, ["short\n", "too long: 100001", "too long: 100001", "after\n", "last-no-newline"]);
        // Exactly at the bound is a line; one over is not.
        let mut r = std::io::BufReader::new("abc\nabcd".as_bytes());
        assert_eq!(read_line_bounded(&mut r, &mut buf, 3).unwrap(), Some(BoundedLine::Line));
        assert_eq!(read_line_bounded(&mut r, &mut buf, 3).unwrap(), Some(BoundedLine::TooLong(4)));
        assert_eq!(read_line_bounded(&mut r, &mut buf, 3).unwrap(), None);
        assert_eq!((size(900), size(16_800_000)), ("900 bytes".to_owned(), "16.8 MB".to_owned()));
    }
}
