//! The file picker as a button: a label styled as a button around a hidden file input, so a
//! keyboard, a screen reader and a tap all reach the browser's own picker.

use leptos::prelude::*;
use web_sys::{File, HtmlInputElement};

use crate::browser::js;

/// A button that opens the file picker; `on_pick` gets the files picked (none when the user
/// cancels). The input is emptied after each pick, so the same file can be picked again.
#[component]
pub fn FileButton<F>(
    /// The button's words.
    label: &'static str,
    testid: &'static str,
    mut on_pick: F,
    /// The file types offered (`None`: any).
    #[prop(optional)]
    accept: Option<&'static str>,
    #[prop(optional)] multiple: bool,
    /// Picks a folder (with everything below it) instead of files.
    #[prop(optional)]
    folders: bool,
    #[prop(optional, into)] disabled: Signal<bool>,
    #[prop(default = "button secondary")] class: &'static str,
) -> impl IntoView
where
    F: FnMut(Vec<File>) + 'static,
{
    let on_change = move |ev: leptos::ev::Event| {
        let input: HtmlInputElement = event_target(&ev);
        let files = js::files_of(&input);
        input.set_value("");
        on_pick(files);
    };
    view! {
        <label class=class class:disabled=move || disabled.get()>
            <input
                class="visually-hidden"
                type="file"
                accept=accept
                multiple=multiple
                prop:webkitdirectory=folders
                data-testid=testid
                disabled=move || disabled.get()
                on:change=on_change
            />
            {label}
        </label>
    }
}
