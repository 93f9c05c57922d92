//! What a run gives, as tables: the epoch table while training, then the best epoch's
//! validation accuracy, per-class accuracy and confusion matrix.

use leptos::prelude::*;

use crate::engine::train::report::{EpochReport, TrainReport, most_confused};

/// One row per finished epoch: losses, accuracies and time.
#[component]
pub fn EpochTable(rows: Signal<Vec<EpochReport>>) -> impl IntoView {
    view! {
        <Show when=move || rows.with(|r| !r.is_empty())>
            <div class="table-scroll">
                <table class="epochs" data-testid="epoch-table">
                    <thead>
                        <tr>
                            <th>"Epoch"</th>
                            <th>"Train loss"</th>
                            <th>"Train acc."</th>
                            <th>"Val loss"</th>
                            <th>"Val acc."</th>
                            <th>"Time"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For
                            each=move || rows.get()
                            key=|r| r.epoch
                            children=|r| view! {
                                <tr data-testid="epoch-row" data-epoch=r.epoch data-seconds=format!("{:.3}", r.seconds)>
                                    <td>{r.epoch}</td>
                                    <td data-train-loss=r.train_loss.to_string()>{format!("{:.3}", r.train_loss)}</td>
                                    <td>{format!("{:.0}%", r.train_acc * 100.0)}</td>
                                    <td data-val-loss=r.val_loss.to_string()>{format!("{:.3}", r.val_loss)}</td>
                                    <td>{format!("{:.0}%", r.val_acc * 100.0)}</td>
                                    <td>{format!("{:.1} s", r.seconds)}</td>
                                </tr>
                            }
                        />
                    </tbody>
                </table>
            </div>
        </Show>
    }
}

/// Largest confusion matrix drawn as a table; a larger one is shown as its most confused pairs
/// (a project's report could otherwise ask for millions of cells).
const MAX_MATRIX_CLASSES: usize = 20;
/// Pairs listed in its place.
const PAIRS_SHOWN: usize = 20;

/// Validation accuracy, per-class accuracy and the confusion matrix of the best epoch.
#[component]
pub fn ReportView(report: TrainReport, classes: Vec<String>) -> impl IntoView {
    if report.confusion.len() > MAX_MATRIX_CLASSES {
        return LargeReport(report, classes).into_any();
    }
    let head = classes
        .iter()
        .map(|c| view! { <th scope="col">{c.clone()}</th> })
        .collect_view();
    let body = report
        .confusion
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let cells = row
                .iter()
                .enumerate()
                .map(|(j, n)| view! { <td class:diag=i == j>{*n}</td> })
                .collect_view();
            let acc = report.per_class_acc.get(i).copied().unwrap_or(0.0);
            view! {
                <tr>
                    <th scope="row">{classes.get(i).cloned().unwrap_or_default()}</th>
                    {cells}
                    <td data-testid="class-accuracy" data-value=acc.to_string()>{format!("{:.0}%", acc * 100.0)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        {val_accuracy(&report)}
        <div class="table-scroll">
            <table class="confusion" data-testid="confusion-matrix">
                <caption>"Rows: the true class. Columns: what the model said."</caption>
                <thead>
                    <tr><th></th>{head}<th scope="col">"Accuracy"</th></tr>
                </thead>
                <tbody>{body}</tbody>
            </table>
        </div>
    }
    .into_any()
}

/// The best epoch's validation accuracy, as a line.
fn val_accuracy(report: &TrainReport) -> impl IntoView + use<> {
    view! {
        <p class="val-accuracy" data-testid="val-accuracy" data-value=report.val_acc.to_string()>
            {format!(
                "Validation accuracy: {:.0}% (best epoch {}, {:.1} s in all)",
                report.val_acc * 100.0,
                report.best_epoch,
                report.seconds_total
            )}
        </p>
    }
}

/// The accuracy and the most confused pairs of a run with many classes.
#[allow(non_snake_case)]
fn LargeReport(report: TrainReport, classes: Vec<String>) -> impl IntoView {
    let name = |i: usize| {
        classes
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("class {i}"))
    };
    let pairs = most_confused(&report.confusion, PAIRS_SHOWN)
        .into_iter()
        .map(|c| {
            let line = format!(
                "{} taken for {}: {}",
                name(c.truth),
                name(c.predicted),
                c.count
            );
            view! { <li>{line}</li> }
        })
        .collect_view();
    view! {
        {val_accuracy(&report)}
        <p class="muted small">
            {format!("{} classes are too many for a table: the most confused pairs instead.", report.confusion.len())}
        </p>
        <ol class="confused-pairs" data-testid="confused-pairs">{pairs}</ol>
    }
}
