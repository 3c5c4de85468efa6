//! `gpu-cnn summary`: a layer table like torchsummary's.

use anyhow::Result;

use gpu_cnn::model::Model;

#[derive(clap::Args)]
pub struct Args {
    /// Model spec (see `--arch` in the README); the tutorial CNN by default
    #[arg(long)]
    arch: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    let model = super::model_from(a.arch.as_deref())?;
    out!("{}", table(&model))?;
    Ok(())
}

pub fn table(model: &Model) -> String {
    let mut s = String::new();
    let line = "-".repeat(78);
    s += &format!(
        "{line}\n{:<10} {:<24} {:<12} {:>10} {:>10}\n{line}\n",
        "name", "layer", "output shape", "params", "MFLOPs"
    );
    s += &format!("{:<10} {:<24} {:<12} {:>10} {:>10}\n", "input", "", format!("{}", model.input), "", "");
    for l in &model.layers {
        let params = l.num_params();
        s += &format!(
            "{:<10} {:<24} {:<12} {:>10} {:>10.3}\n",
            l.name,
            l.layer.to_string(),
            l.output.to_string(),
            params,
            l.flops_per_sample() as f64 / 1e6
        );
    }
    s += &format!(
        "{line}\ntotal parameters: {}\nforward: {:.2} MFLOP per image (a multiply-add counts 2); a training step costs about 3x that\n",
        model.num_params,
        model.flops_per_sample() as f64 / 1e6
    );
    if let Some(f) = model.layers.iter().find(|l| l.layer == gpu_cnn::model::Layer::Flatten) {
        s += &format!(
            "flatten turns {} into {} features: that is why the classifier's input is {}·{}·{} = {}\n",
            f.input, f.output.c, f.input.c, f.input.h, f.input.w, f.output.c
        );
    }
    s
}
