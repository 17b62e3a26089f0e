//! Documentation generated from the command line itself: shell completions
//! (`ironpost completions SHELL`) and the man pages the package ships.

use std::path::Path;

use anyhow::Context as _;

/// Prints the completion script for `shell` on stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) {
    clap_complete::generate(shell, &mut cmd, "ironpost", &mut std::io::stdout());
}

/// Writes ironpost(8) and one page per command (`ironpost-block-add(8)`…)
/// into `dir`.
pub fn manpages(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    write_page(&cmd, dir)
}

/// Writes the page of `cmd` and of its visible commands (a built command's
/// subcommands are named `ironpost-block-add` and so on).
fn write_page(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_page(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone()).section("8");
    let path = dir.join(man.get_filename());
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    man.manual("Ironpost")
        .source(format!("ironpost {}", env!("CARGO_PKG_VERSION")))
        .render(&mut file)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
