//! A transcript written as the replay goes: each decision when it is made, then the end state. The bytes
//! are [`Transcript::render`]'s: the decisions come first in the transcript (its fields are in
//! alphabetical order), so only the end state waits for the end.

use std::io::Write;

#[cfg(doc)]
use super::transcript::Transcript;
use super::transcript::{Decision, Format, Sink, Tail};

/// Writes a transcript in `format` to `out`, decision by decision.
pub struct Writer<W: Write> {
    out: std::io::BufWriter<W>,
    format: Format,
    decisions: usize,
    /// One decision serialized, before it is indented into place; reused.
    scratch: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(format: Format, out: W) -> Self {
        Writer { out: std::io::BufWriter::with_capacity(1 << 16, out), format, decisions: 0, scratch: Vec::new() }
    }

    /// How many decisions were written.
    pub fn decisions(&self) -> usize {
        self.decisions
    }

    /// Writes the end state and flushes.
    pub fn finish(mut self, tail: &Tail) -> std::io::Result<()> {
        self.scratch.clear();
        match self.format {
            Format::Yaml => {
                if self.decisions == 0 {
                    self.out.write_all(b"decisions: []\n")?;
                }
                serde_yaml_ng::to_writer(&mut self.out, tail).map_err(std::io::Error::other)?;
            }
            Format::Json => {
                self.out.write_all(if self.decisions == 0 { b"{\n  \"decisions\": [],\n" } else { b"\n  ],\n" })?;
                serde_json::to_writer_pretty(&mut self.scratch, tail)?;
                // The tail's own opening brace is the transcript's, already written.
                let body = self.scratch.strip_prefix(b"{\n").unwrap_or(&self.scratch);
                self.out.write_all(body)?;
                self.out.write_all(b"\n")?;
            }
        }
        self.out.flush()
    }

    fn write_json(&mut self, decision: &Decision) -> std::io::Result<()> {
        self.out.write_all(if self.decisions == 0 { b"{\n  \"decisions\": [\n" } else { b",\n" })?;
        self.scratch.clear();
        serde_json::to_writer_pretty(&mut self.scratch, decision)?;
        // Two levels down in the transcript. Pretty JSON escapes a newline inside a string, so every
        // newline here starts a line.
        for (n, line) in self.scratch.split(|b| *b == b'\n').enumerate() {
            if n > 0 {
                self.out.write_all(b"\n")?;
            }
            self.out.write_all(b"    ")?;
            self.out.write_all(line)?;
        }
        Ok(())
    }

    fn write_yaml(&mut self, decision: &Decision) -> std::io::Result<()> {
        if self.decisions == 0 {
            self.out.write_all(b"decisions:\n")?;
        }
        // A sequence under a key is written unindented, so one decision as a one-item sequence is the
        // same text as in place.
        serde_yaml_ng::to_writer(&mut self.out, std::slice::from_ref(decision)).map_err(std::io::Error::other)
    }
}

impl<W: Write> Sink for Writer<W> {
    fn decision(&mut self, decision: Decision) -> std::io::Result<()> {
        match self.format {
            Format::Yaml => self.write_yaml(&decision)?,
            Format::Json => self.write_json(&decision)?,
        }
        self.decisions += 1;
        Ok(())
    }
}
