//! `trendwatch-loadgen`: writes a generated workload and its ground truth to files.
//! The same options are `trendwatch loadgen`.

use clap::Parser;
use trendwatch_loadgen::LoadgenArgs;

#[derive(Parser)]
#[command(
    name = "trendwatch-loadgen",
    version,
    about = "Generate a realistic engagement workload with ground truth"
)]
struct Cli {
    #[command(flatten)]
    args: LoadgenArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let summary = trendwatch_loadgen::run(&cli.args)?;
    eprintln!("{summary}");
    Ok(())
}
