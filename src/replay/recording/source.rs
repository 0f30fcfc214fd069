//! Where a replay reads its recording. A replay reads it twice, once to check and index it and once to
//! replay it, so a recording on disk is never held in memory: a week of a busy stream is millions of lines.

use std::borrow::Cow;
use std::io::BufReader;
use std::path::Path;

use super::{read_lines, read_lines_with, Error, Line, Peeked, Recording, Result};

/// A recording to replay.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A recording already read (a test's, or one put together in memory).
    Memory(&'a Recording),
    /// A JSON Lines file, read line by line on each pass.
    File(&'a Path),
}

/// One pass over a recording's lines.
pub(crate) type Pass<'a> = Box<dyn Iterator<Item = Result<Cow<'a, Line>>> + 'a>;

impl<'a> Source<'a> {
    /// The lines, in file order, each read on its own.
    pub(crate) fn pass(&self) -> Result<Pass<'a>> {
        match *self {
            Source::Memory(recording) => Ok(Box::new(recording.kept().iter().map(|l| Ok(Cow::Borrowed(l))))),
            Source::File(path) => {
                let file = std::fs::File::open(path).map_err(|source| io(path, source))?;
                let lines = read_lines(BufReader::with_capacity(1 << 16, file));
                Ok(Box::new(lines.map(move |line| match line {
                    Ok(line) => Ok(Cow::Owned(line)),
                    Err(Error::Io { source, .. }) => Err(io(path, source)),
                    Err(other) => Err(other),
                })))
            }
        }
    }

    /// The lines, checked as [`Self::pass`] checks them, with the event built only for lines whose
    /// subject's aggregate is `wanted`: the replay's first pass, cheaper than reading every line whole.
    pub(crate) fn skim<'s>(
        &self,
        wanted: impl Fn(&str) -> bool + 's,
    ) -> Result<Box<dyn Iterator<Item = Result<Peeked<'a>>> + 's>>
    where
        'a: 's,
    {
        match *self {
            Source::Memory(recording) => {
                Ok(Box::new(recording.kept().iter().map(|l| Ok(Peeked::Line(Box::new(Cow::Borrowed(l)))))))
            }
            Source::File(path) => {
                let file = std::fs::File::open(path).map_err(|source| io(path, source))?;
                let skim = move |text: &str, line: usize| Line::skim(text, line, &wanted);
                let lines = read_lines_with(BufReader::with_capacity(1 << 16, file), skim);
                Ok(Box::new(lines.map(move |line| match line {
                    Err(Error::Io { source, .. }) => Err(io(path, source)),
                    other => other,
                })))
            }
        }
    }

    /// Reads and checks every line without keeping any: how many lines there are, and how many of them
    /// are eddy events.
    pub fn count(&self) -> Result<(usize, usize)> {
        let mut order = super::Order::default();
        let (mut lines, mut events) = (0, 0);
        for line in self.pass()? {
            let line = line?;
            order.check(line.seq, line.line)?;
            lines += 1;
            events += usize::from(line.event().is_ok());
        }
        Ok((lines, events))
    }

    /// How errors name it.
    pub(crate) fn name(&self) -> String {
        match self {
            Source::Memory(_) => "the recording".into(),
            Source::File(path) => path.display().to_string(),
        }
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}
