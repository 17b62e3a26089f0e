//! `cargo xtask package`: the Debian package, built with cargo-deb from
//! the release binary, with man pages and completions generated from the
//! command line itself.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{Tools, run_status};

/// Builds the package and returns its path.
pub fn package(tools: &Tools, root: &Path) -> Result<PathBuf> {
    let binary = crate::demo::build_release(tools, root)?;
    let out = root.join("target/package");
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    println!("== man pages and completions");
    run_status(Command::new(&binary).arg("manpages").arg(&man))?;
    for page in fs::read_dir(&man)? {
        let page = page?.path();
        // -n: no name or time stamp in the header, so builds are identical.
        run_status(Command::new("gzip").args(["-9", "-n", "-f"]).arg(&page))?;
    }
    for (shell, file) in [
        ("bash", "ironpost"),
        ("zsh", "_ironpost"),
        ("fish", "ironpost.fish"),
    ] {
        let script = Command::new(&binary)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("running {} completions {shell}", binary.display()))?;
        if !script.status.success() {
            bail!(
                "`ironpost completions {shell}` failed: {}",
                String::from_utf8_lossy(&script.stderr)
            );
        }
        fs::write(completions.join(file), script.stdout)?;
    }
    println!("== cargo deb");
    let deb_dir = out.join("deb");
    fs::create_dir_all(&deb_dir)?;
    let result = Command::new(tools.bin().join("cargo-deb"))
        .args(["--no-build", "--package", "ironpost", "--output"])
        .arg(&deb_dir)
        .env("PATH", tools.path_env())
        .current_dir(root)
        .output()
        .context("running cargo-deb (cargo xtask setup installs it)")?;
    if !result.status.success() {
        bail!(
            "cargo-deb failed:\n{}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
    let path = PathBuf::from(String::from_utf8_lossy(&result.stdout).trim().to_owned());
    if !path.is_file() {
        bail!("cargo-deb did not say where it wrote the package (it printed {path:?})");
    }
    println!("{}", path.display());
    Ok(path)
}
