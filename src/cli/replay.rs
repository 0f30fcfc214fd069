//! `eddy replay`: a recording through a config, offline, into a transcript; `--check` compares it with a
//! stored one (approval testing), `--update` rewrites that.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use eddy::replay::{self, Format, Recording};

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Yaml,
    Json,
}

pub struct ReplayArgs {
    pub recording: PathBuf,
    pub format: Option<FormatArg>,
    pub out: Option<PathBuf>,
    pub check: Option<PathBuf>,
    pub update: Option<PathBuf>,
}

/// The format: as given, else by the extension of the file written or compared, else YAML.
fn format_of(arg: Option<FormatArg>, file: Option<&Path>) -> Format {
    match arg {
        Some(FormatArg::Json) => Format::Json,
        Some(FormatArg::Yaml) => Format::Yaml,
        None if file.and_then(Path::extension).is_some_and(|e| e == "json") => Format::Json,
        None => Format::Yaml,
    }
}

pub fn replay(config: &Path, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let settings = super::load(config)?;
    let recording =
        Recording::read(&args.recording).with_context(|| format!("cannot replay {}", args.recording.display()))?;
    let transcript = replay::replay(&settings, &recording);
    for warning in &transcript.warnings {
        eprintln!("warning: {warning}");
    }
    let file = args.check.as_deref().or(args.update.as_deref()).or(args.out.as_deref());
    let format = format_of(args.format, file);
    eprintln!(
        "replayed {} events: {} caused something, {} timers fired in the replay, {} warnings",
        transcript.recording.events,
        transcript.decisions.len(),
        transcript.recording.timers_fired,
        transcript.warnings.len()
    );
    if let Some(path) = &args.check {
        let text = transcript.render(format);
        let stored = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(match replay::diff(&stored, &text, &path.display().to_string()) {
            None => {
                eprintln!("{}: the transcript matches", path.display());
                ExitCode::SUCCESS
            }
            Some(diff) => {
                println!("{diff}");
                eprintln!(
                    "{}: the transcript differs (- stored, + replay); `eddy replay --update {}` accepts the new one",
                    path.display(),
                    path.display()
                );
                ExitCode::FAILURE
            }
        });
    }
    match args.update.as_deref().or(args.out.as_deref()) {
        Some(path) => {
            let writing = || format!("writing {}", path.display());
            let file = std::fs::File::create(path).with_context(writing)?;
            transcript.write(format, file).with_context(writing)?;
            if args.update.is_some() {
                eprintln!("wrote {}", path.display());
            }
        }
        None => transcript.write(format, std::io::stdout().lock()).context("writing the transcript")?,
    }
    Ok(ExitCode::SUCCESS)
}
