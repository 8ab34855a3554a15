//! `bpdelta diff OLD NEW PATCH` / `bpdelta apply OLD PATCH OUT`: the crate's
//! patches by hand, for `tests/benches/delta.sh` and for looking at a pair of
//! builds.

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use binproxy_delta::{apply, build, BuildOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["diff", old, new, patch] => diff(old, new, patch),
        ["apply", old, patch, out] => patch_to(old, patch, out),
        _ => Err("usage: bpdelta diff OLD NEW PATCH | bpdelta apply OLD PATCH OUT".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bpdelta: {e}");
            ExitCode::FAILURE
        }
    }
}

fn diff(old: &str, new: &str, patch: &str) -> Result<(), Box<dyn std::error::Error>> {
    let opts = BuildOptions {
        level: binproxy_delta::zst::LEVEL,
        deadline: None,
        tmp_dir: std::env::temp_dir(),
    };
    let mut out = File::create(patch)?;
    let stats = build(&File::open(old)?, &File::open(new)?, &mut out, &opts)?;
    eprintln!(
        "{} -> {} bytes: patch {} bytes",
        stats.old_len, stats.new_len, stats.patch_len
    );
    Ok(())
}

fn patch_to(old: &str, patch: &str, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let patch = File::open(patch)?;
    let mut head = [0u8; 48];
    std::os::unix::fs::FileExt::read_exact_at(&patch, &mut head, 0)?;
    let header = binproxy_delta::Header::parse(&head, patch.metadata()?.len())?;
    let mut w = BufWriter::new(File::create(out)?);
    apply(&File::open(old)?, &patch, &mut w, header.new_size)?;
    Ok(())
}
