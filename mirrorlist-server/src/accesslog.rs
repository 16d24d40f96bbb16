//! The access log: one line per answered repository request, in
//! MirrorManager's statistics format, so existing statistics scripts keep
//! working:
//!
//! ```text
//! IP: 192.0.2.1; DATE: 2026-11-23; COUNTRY: DE; REPO: fedora-42; ARCH: x86_64
//! ```
//!
//! followed by `; COUNTME: N` when the client sent `countme=N` (dnf does so
//! once a week; it is how distributions count their users).
//!
//! Lines go into a large buffer that is flushed by a timer and when the log
//! is reopened or the server stops, never per request. Reopening (SIGHUP,
//! SIGUSR1) lets logrotate move the file away without `copytruncate`.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::handler::AccessRecord;

/// An open access log.
#[derive(Debug)]
pub struct AccessLog {
    path: PathBuf,
    out: BufWriter<File>,
    /// The formatted date and the day it belongs to, so the date is
    /// computed once a day, not per line.
    day: u64,
    date: [u8; 10],
}

fn open(path: &Path) -> io::Result<BufWriter<File>> {
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(BufWriter::with_capacity(64 * 1024, f))
}

impl AccessLog {
    /// Opens (appending) or creates the log.
    pub fn open(path: &Path) -> io::Result<AccessLog> {
        Ok(AccessLog {
            path: path.to_owned(),
            out: open(path)?,
            day: u64::MAX,
            date: *b"1970-01-01",
        })
    }

    /// Appends one line for `rec`, dated now.
    pub fn record(&mut self, rec: &AccessRecord<'_>) -> io::Result<()> {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.record_at(rec, secs)
    }

    fn record_at(&mut self, rec: &AccessRecord<'_>, unix_secs: u64) -> io::Result<()> {
        let day = unix_secs / 86_400;
        if day != self.day {
            self.day = day;
            self.date = civil_date(day);
        }
        // Pieces written as they are: the formatting machinery cost more
        // than the rest of the line (a few % of the server's CPU).
        let out = &mut self.out;
        out.write_all(b"IP: ")?;
        match rec.ip {
            Some(IpAddr::V4(ip)) => write_v4(out, ip)?,
            Some(ip) => write!(out, "{ip}")?,
            None => out.write_all(b"unknown")?,
        }
        out.write_all(b"; DATE: ")?;
        out.write_all(&self.date)?;
        out.write_all(b"; COUNTRY: ")?;
        match rec.country {
            Some(c) => out.write_all(c.as_str().as_bytes())?,
            None => out.write_all(b"N/A")?,
        }
        out.write_all(b"; REPO: ")?;
        out.write_all(rec.repo.as_bytes())?;
        out.write_all(b"; ARCH: ")?;
        out.write_all(rec.arch.as_bytes())?;
        if let Some(n) = rec.countme {
            write!(out, "; COUNTME: {n}")?;
        }
        out.write_all(b"\n")
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes, then opens the path again (after logrotate moved the file).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out = open(&self.path)?;
        Ok(())
    }
}

/// Writes `ip` in dotted decimal, as `Display` does.
fn write_v4(out: &mut impl Write, ip: Ipv4Addr) -> io::Result<()> {
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    out.write_all(&text[..len])
}

/// `YYYY-MM-DD` of a day number since 1970-01-01.
fn civil_date(days: u64) -> [u8; 10] {
    let (y, m, d) = mirrorlist_core::time::civil_from_days(days as i64);
    let mut out = [0u8; 10];
    let text = format!("{:04}-{m:02}-{d:02}", y.clamp(0, 9999));
    out.copy_from_slice(text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirrorlist_core::model::Country;

    #[test]
    fn ipv4_as_display_writes_it() {
        for text in [
            "0.0.0.0",
            "1.2.3.4",
            "10.20.30.40",
            "192.168.100.255",
            "255.255.255.255",
            "9.99.100.109",
        ] {
            let ip: Ipv4Addr = text.parse().unwrap();
            let mut out = Vec::new();
            write_v4(&mut out, ip).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), ip.to_string());
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(&civil_date(0), b"1970-01-01");
        assert_eq!(&civil_date(11_016), b"2000-02-29");
        // 2026-11-23 is day 20780.
        assert_eq!(&civil_date(20_780), b"2026-11-23");
        assert_eq!(&civil_date(20_819), b"2027-01-01");
    }

    #[test]
    fn line_format_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut log = AccessLog::open(&path).unwrap();
        let rec = AccessRecord {
            ip: Some("192.0.2.1".parse().unwrap()),
            country: Country::parse("DE"),
            repo: "fedora-42".into(),
            arch: "x86_64",
            countme: Some(3),
        };
        log.record_at(&rec, 20_780 * 86_400 + 5).unwrap();
        // Nothing is written until a flush: no write per request.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        // logrotate moves the file; reopening starts a new one.
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        log.reopen().unwrap();
        let rotated = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
        assert_eq!(
            rotated,
            "IP: 192.0.2.1; DATE: 2026-11-23; COUNTRY: DE; REPO: fedora-42; ARCH: x86_64; COUNTME: 3\n"
        );
        let rec2 = AccessRecord {
            ip: None,
            country: None,
            countme: None,
            ..rec
        };
        log.record_at(&rec2, 0).unwrap();
        log.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "IP: unknown; DATE: 1970-01-01; COUNTRY: N/A; REPO: fedora-42; ARCH: x86_64\n"
        );
    }
}
