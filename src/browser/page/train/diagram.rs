//! The network drawn as its layer groups, input to output (stem, the 7 stages of MBConv blocks,
//! conv head, the new classifier head), each marked frozen or learning for the chosen strategy,
//! one row per stage of `gradual`. Students see what "freeze" means before they press Train.

use leptos::prelude::*;

use crate::engine::model::BackboneSpec;
use crate::engine::train::plan::{Stage, Unfreeze};
use crate::engine::train::step::{block_group, group_multipliers};

/// Whether `block` of `blocks` trains when `unfreeze` is in effect.
fn block_trains(unfreeze: Unfreeze, blocks: usize, block: usize) -> bool {
    match unfreeze {
        Unfreeze::All => true,
        Unfreeze::Blocks(n) => block + n.min(blocks) >= blocks,
    }
}

/// A multiplier as a short number: `0.1`, `0.001`, `1e-5`.
fn short(m: f64) -> String {
    if m >= 1e-3 {
        let text = format!("{m:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{m:.0e}")
    }
}

/// Relative rates of the learning blocks in one part, as "×0.01" or "×0.001–0.01".
fn rate_text(mults: &[f64]) -> Option<String> {
    let lo = mults.iter().copied().reduce(f64::min)?;
    let hi = mults.iter().copied().reduce(f64::max)?;
    Some(if (hi - lo).abs() <= hi * 1e-9 {
        format!("×{}", short(hi))
    } else {
        format!("×{}–{}", short(lo), short(hi))
    })
}

/// One box of the diagram.
struct Part {
    name: String,
    detail: String,
    /// One entry per block (stages) or a single entry (stem, conv head, head): learning?
    pips: Vec<bool>,
    rate: Option<String>,
}

fn parts(spec: &BackboneSpec, unfreeze: Unfreeze, lr_mult: f64) -> Vec<Part> {
    let count = spec.block_count();
    let mult = group_multipliers(lr_mult);
    let mut out = Vec::new();
    let all = unfreeze == Unfreeze::All;
    out.push(Part {
        name: "Stem".into(),
        detail: "first convolution".into(),
        pips: vec![all],
        rate: all.then(|| rate_text(&[mult[0]])).flatten(),
    });
    let mut first = 0;
    for (i, &(repeats, ..)) in spec.stages().iter().enumerate() {
        let blocks: Vec<usize> = (first..first + repeats).collect();
        first += repeats;
        let pips: Vec<bool> = blocks
            .iter()
            .map(|&b| block_trains(unfreeze, count, b))
            .collect();
        let learning: Vec<f64> = blocks
            .iter()
            .filter(|&&b| block_trains(unfreeze, count, b))
            .map(|&b| mult[block_group(spec, b)])
            .collect();
        let detail = match (blocks.first(), blocks.last()) {
            (Some(a), Some(b)) if a == b => format!("block {a}"),
            (Some(a), Some(b)) => format!("blocks {a}–{b}"),
            _ => String::new(),
        };
        out.push(Part {
            name: format!("Stage {}", i + 1),
            detail,
            pips,
            rate: rate_text(&learning),
        });
    }
    let conv_head = all || matches!(unfreeze, Unfreeze::Blocks(n) if n > 0);
    out.push(Part {
        name: "Conv head".into(),
        detail: "1280 features".into(),
        pips: vec![conv_head],
        rate: conv_head.then(|| rate_text(&[mult[2]])).flatten(),
    });
    out.push(Part {
        name: "New head".into(),
        detail: "your classes".into(),
        pips: vec![true],
        rate: rate_text(&[mult[3]]),
    });
    out
}

fn stage_title(stages: &[Stage], index: usize) -> String {
    let before: usize = stages[..index].iter().map(|s| s.epochs).sum();
    let epochs = stages[index].epochs;
    let when = match epochs {
        0 => "no epochs".to_string(),
        1 => format!("epoch {}", before + 1),
        _ => format!("epochs {}–{}", before + 1, before + epochs),
    };
    if stages.len() == 1 {
        format!("All {epochs} epochs")
    } else {
        format!("Stage {} ({when})", index + 1)
    }
}

fn row_view(title: String, parts: Vec<Part>) -> impl IntoView {
    let boxes = parts
        .into_iter()
        .map(|p| {
            let learning = p.pips.iter().any(|&t| t);
            let partly = learning && p.pips.iter().any(|&t| !t);
            let state = if partly {
                "partly learning"
            } else if learning {
                "learning"
            } else {
                "frozen"
            };
            let pips = p
                .pips
                .iter()
                .map(|&t| view! { <span class="pip" class:learning=t></span> })
                .collect_view();
            view! {
                <li class="layer" class:learning=learning data-state=state>
                    <span class="layer-name">
                        <span aria-hidden="true" class="layer-icon">{if learning { "✱" } else { "❄" }}</span>
                        {p.name}
                    </span>
                    <span class="layer-detail">{p.detail}</span>
                    <span class="pips" aria-hidden="true">{pips}</span>
                    <span class="layer-state">{state}</span>
                    {p.rate.map(|r| view! { <span class="layer-rate" title="learning rate relative to the head">{r}</span> })}
                </li>
            }
        })
        .collect_view();
    view! {
        <div class="layer-row" data-testid="layer-stage">
            <p class="layer-row-title">{title}</p>
            <ol class="layers">{boxes}</ol>
        </div>
    }
}

/// The layer diagram of `spec` for the run's `stages` (from `train::plan`); `lr_mult` sets
/// the relative rates shown on the learning parts.
#[component]
pub fn LayerDiagram(
    spec: Signal<&'static BackboneSpec>,
    stages: Signal<Vec<Stage>>,
    lr_mult: Signal<f64>,
) -> impl IntoView {
    view! {
        <figure class="layer-diagram" data-testid="layer-diagram">
            <figcaption>
                <strong>"What learns. "</strong>
                "Input on the left, your classes on the right. "
                <span class="key frozen-key">"❄ frozen"</span>
                " keeps its ImageNet weights; "
                <span class="key learning-key">"✱ learning"</span>
                " changes, at the rate shown (relative to the new head)."
            </figcaption>
            {move || {
                let stages = stages.get();
                let mult = lr_mult.get();
                let spec = spec.get();
                (0..stages.len())
                    .map(|i| {
                        row_view(stage_title(&stages, i), parts(spec, stages[i].unfreeze, mult))
                    })
                    .collect_view()
            }}
        </figure>
    }
}
