//! The report of `keel eval run --report DIR` as one static HTML page (`report.html`): no script, no outside
//! resource, so it opens offline in any browser and can be attached to an issue. Charts are inline SVG: success
//! per category, the distribution of turn latencies, and a waterfall of one run's steps (the slowest failed
//! attempt, or the slowest attempt when none failed).

use std::fmt::Write;

use super::{Attempt, Report, Totals};

/// Where `keel eval run --report DIR` keeps an attempt's runs, relative to DIR (`runs/TASK-K.json`).
pub fn runs_file(task_id: &str, attempt: usize) -> String {
    let safe: String = task_id.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    format!("runs/{safe}-{attempt}.json")
}

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn opt_pct(v: Option<f64>) -> String {
    v.map(pct).unwrap_or_else(|| "–".into())
}

fn opt_ms(v: Option<u64>) -> String {
    v.map(|v| format!("{v} ms")).unwrap_or_else(|| "–".into())
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d232b;background:#fff}\
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}table{border-collapse:collapse;width:100%}\
th,td{border-bottom:1px solid #d8dde3;padding:.3rem .5rem;text-align:left;vertical-align:top}th{background:#f2f4f7}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.fail{color:#a3161b;font-weight:600}.pass{color:#1d6b32;font-weight:600}\
code{font-size:.9em}svg text{font:12px system-ui,sans-serif;fill:#1d232b}.muted{color:#56606b}\
@media (prefers-color-scheme:dark){body{background:#15191e;color:#e3e7ec}th{background:#232a31}th,td{border-color:#323a43}\
svg text{fill:#e3e7ec}.fail{color:#ff8a8f}.pass{color:#7fd493}.muted{color:#a3adb8}}";

/// The whole page.
pub fn render(report: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
<title>Keel evaluation: {}</title><style>{STYLE}</style></head><body>",
        esc(&report.tasks_file)
    );
    let _ = write!(
        h,
        "<h1>Keel evaluation</h1><p><code>{}</code> on <b>{}</b>, {} attempt(s) per task, {} task(s), {} line(s) not run.</p>",
        esc(&report.tasks_file),
        esc(&report.backend),
        report.repeat,
        report.tasks.len(),
        report.errors.len()
    );
    totals_table(&mut h, report);
    if report.total.routed_attempts > 0 {
        let _ = write!(
            h,
            "<p>Routed by code (the tool chosen from the message, not by the model): {} attempt(s), turn latency p50 {}, p95 {}.</p>",
            report.total.routed_attempts,
            opt_ms(report.total.routed_p50_ms),
            opt_ms(report.total.routed_p95_ms)
        );
    }
    if let Some(a) = &report.attacks {
        let _ = write!(
            h,
            "<h2>Attacks</h2><table><tr><th>pairs</th><th>utility without attack</th><th>utility under attack</th>\
<th>targeted attack success</th></tr><tr><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr></table>",
            a.pairs,
            pct(a.utility_without_attack),
            pct(a.utility_under_attack),
            pct(a.targeted_attack_success)
        );
    }
    h.push_str("<h2>Success per category</h2>");
    h.push_str(&success_chart(&report.categories));
    h.push_str("<h2>Latency per turn</h2>");
    h.push_str(&latency_chart(report));
    if let Some((id, k, attempt)) = waterfall_attempt(report) {
        let _ = write!(h, "<h2>Steps of {} (attempt {k})</h2>", esc(id));
        h.push_str(&waterfall(attempt));
    }
    if !report.errors.is_empty() {
        h.push_str("<h2>Lines not run</h2><table><tr><th>line</th><th>field</th><th>error</th></tr>");
        for e in &report.errors {
            let _ = write!(h, "<tr><td class=n>{}</td><td><code>{}</code></td><td>{}</td></tr>", e.line, esc(&e.field), esc(&e.message));
        }
        h.push_str("</table>");
    }
    h.push_str(
        "<h2>Tasks</h2><p class=muted>The runs ran in throwaway data dirs; \
each attempt's whole event log is in <code>runs/TASK-ATTEMPT.json</code> beside this page.</p><table><tr><th>task</th><th>category</th><th>attempt</th><th>result</th>\
<th>what happened</th><th>runs</th><th>turn ms</th></tr>",
    );
    for t in &report.tasks {
        for (k, a) in t.attempts.iter().enumerate() {
            let result = if a.passed {
                "<span class=pass>pass</span>".to_owned()
            } else {
                format!("<span class=fail>fail</span><br>{}", a.failures.iter().map(|f| esc(f)).collect::<Vec<_>>().join("<br>"))
            };
            let ids = a.run_ids.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
            let runs = format!("<a href=\"{}\">{ids}</a>", esc(&runs_file(&t.id, k + 1)));
            let turns = a.turn_ms.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ");
            let _ = write!(
                h,
                "<tr><td><code>{}</code> <span class=muted>line {}</span></td><td>{}</td><td class=n>{}</td><td>{result}</td>\
<td>{}<br><span class=muted>tools: {}</span></td><td>{runs}</td><td class=n>{turns}</td></tr>",
                esc(&t.id),
                t.line,
                esc(&t.category),
                k + 1,
                esc(&a.path.join(" → ")),
                esc(&if a.tools_called.is_empty() { "none".to_owned() } else { a.tools_called.join(", ") }),
            );
        }
    }
    h.push_str("</table></body></html>\n");
    h
}

fn totals_table(h: &mut String, report: &Report) {
    h.push_str(
        "<h2>Totals</h2><table><tr><th>category</th><th>tasks</th><th>success</th><th>pass^k</th><th>pass@k</th>\
<th>right tool</th><th>valid args</th><th>recovery</th><th>fabricated</th><th>turn p50</th><th>turn p95</th><th>step p50</th>\
<th>step p95</th><th>tokens/task</th></tr>",
    );
    for c in report.categories.iter().chain(std::iter::once(&report.total)) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td>\
<td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td>\
<td class=n>{:.0}</td></tr>",
            esc(&c.category),
            c.tasks,
            pct(c.success),
            pct(c.pass_hat_k),
            pct(c.pass_at_k),
            opt_pct(c.tool_selection_accuracy),
            opt_pct(c.argument_validity),
            opt_pct(c.recovery_rate),
            opt_pct(c.fabrication_rate),
            opt_ms(c.latency_p50_ms),
            opt_ms(c.latency_p95_ms),
            opt_ms(c.step_p50_ms),
            opt_ms(c.step_p95_ms),
            c.tokens_per_task
        );
    }
    h.push_str("</table>");
}

/// Horizontal bars: success per category, with pass^k as a darker inner bar.
pub fn success_chart(categories: &[Totals]) -> String {
    let (label_w, bar_w, row) = (140.0, 420.0, 24.0);
    let height = row * categories.len() as f64 + 30.0;
    let mut s = format!(
        "<svg role=\"img\" aria-label=\"Success per category\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">",
        label_w + bar_w + 70.0,
        label_w + bar_w + 70.0
    );
    for (i, c) in categories.iter().enumerate() {
        let y = i as f64 * row + 4.0;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{bar_w}\" height=\"16\" fill=\"#8884\"/>\
<rect x=\"{label_w}\" y=\"{y}\" width=\"{:.1}\" height=\"16\" fill=\"#4a8fdb\"><title>success {}</title></rect>\
<rect x=\"{label_w}\" y=\"{}\" width=\"{:.1}\" height=\"6\" fill=\"#1f4f86\"><title>pass^k {}</title></rect>\
<text x=\"{}\" y=\"{}\">{}</text>",
            y + 12.0,
            esc(&c.category),
            bar_w * c.success,
            pct(c.success),
            y + 10.0,
            bar_w * c.pass_hat_k,
            pct(c.pass_hat_k),
            label_w + bar_w + 6.0,
            y + 12.0,
            pct(c.success)
        );
    }
    let y = categories.len() as f64 * row + 20.0;
    let _ = write!(s, "<text x=\"{label_w}\" y=\"{y}\" class=\"muted\">light: success; dark: pass^k</text></svg>");
    s
}

/// A histogram of turn latencies in buckets that double (≤100 ms, ≤200 ms, …).
pub fn latency_chart(report: &Report) -> String {
    let turns: Vec<u64> = report.tasks.iter().flat_map(|t| &t.attempts).flat_map(|a| a.turn_ms.iter().copied()).collect();
    if turns.is_empty() {
        return "<p class=muted>No turn ran.</p>".into();
    }
    let bucket = |ms: u64| -> usize { (ms.max(1) as f64 / 100.0).log2().ceil().max(0.0) as usize };
    let n = turns.iter().map(|t| bucket(*t)).max().unwrap_or(0) + 1;
    let mut counts = vec![0usize; n];
    for t in &turns {
        counts[bucket(*t)] += 1;
    }
    let top = *counts.iter().max().unwrap_or(&1) as f64;
    let (w, h, left) = (44.0, 160.0, 10.0);
    let width = left + w * n as f64 + 10.0;
    let mut s = format!("<svg role=\"img\" aria-label=\"Latency per turn\" width=\"{width}\" height=\"{}\" viewBox=\"0 0 {width} {}\">", h + 40.0, h + 40.0);
    for (i, c) in counts.iter().enumerate() {
        let bar = h * *c as f64 / top;
        let x = left + i as f64 * w;
        let upper = 100u64 << i;
        let label = if upper >= 1000 { format!("≤{}s", upper as f64 / 1000.0) } else { format!("≤{upper}") };
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{bar:.1}\" fill=\"#4a8fdb\"><title>{c} turn(s) {label} ms</title></rect>\
<text x=\"{x}\" y=\"{}\">{label}</text><text x=\"{x}\" y=\"{}\">{c}</text>",
            h - bar + 14.0,
            w - 6.0,
            h + 30.0,
            (h - bar + 10.0).max(12.0)
        );
    }
    s.push_str("</svg>");
    s
}

/// The attempt whose steps the waterfall shows: the slowest failed one with steps, else the slowest.
fn waterfall_attempt(report: &Report) -> Option<(&str, usize, &Attempt)> {
    let all = report.tasks.iter().flat_map(|t| t.attempts.iter().enumerate().map(move |(k, a)| (t.id.as_str(), k + 1, a)));
    let with_steps: Vec<(&str, usize, &Attempt)> = all.filter(|(_, _, a)| !a.spans.is_empty()).collect();
    let time = |a: &Attempt| a.turn_ms.iter().sum::<u64>();
    let failed = with_steps.iter().filter(|(_, _, a)| !a.passed).max_by_key(|(_, _, a)| time(a)).copied();
    failed.or_else(|| with_steps.iter().max_by_key(|(_, _, a)| time(a)).copied())
}

/// One bar per model or tool call, placed on the attempt's time line.
pub fn waterfall(attempt: &Attempt) -> String {
    let end = attempt.spans.iter().map(|s| s.end_ms).max().unwrap_or(1).max(1) as f64;
    let (label_w, bar_w, row) = (140.0, 520.0, 20.0);
    let height = row * attempt.spans.len() as f64 + 24.0;
    let width = label_w + bar_w + 80.0;
    let mut s = format!("<svg role=\"img\" aria-label=\"Steps as a waterfall\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">");
    for (i, span) in attempt.spans.iter().enumerate() {
        let y = i as f64 * row + 2.0;
        let x = label_w + bar_w * span.start_ms as f64 / end;
        let w = (bar_w * (span.end_ms.saturating_sub(span.start_ms)) as f64 / end).max(2.0);
        let colour = if !span.ok { "#d64545" } else if span.label == "model" { "#4a8fdb" } else { "#3aa26b" };
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\">{} <tspan class=\"muted\">run {}</tspan></text><rect x=\"{x:.1}\" y=\"{y}\" width=\"{w:.1}\" height=\"14\" fill=\"{colour}\">\
<title>{} {}–{} ms</title></rect><text x=\"{:.1}\" y=\"{}\">{} ms</text>",
            y + 11.0,
            esc(&span.label),
            span.run_id,
            esc(&span.label),
            span.start_ms,
            span.end_ms,
            (x + w + 4.0).min(width - 60.0),
            y + 11.0,
            span.end_ms - span.start_ms
        );
    }
    let _ = write!(s, "<text x=\"{label_w}\" y=\"{}\" class=\"muted\">0 to {end} ms; blue: model, green: tool, red: failed tool</text></svg>", height - 4.0);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_tasks_is_escaped() {
        assert_eq!(esc("<script>alert('x')</script> & \"q\""), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
    }
}
