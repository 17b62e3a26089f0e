//! `ironpost top`: a live view of the running daemon, redrawn every
//! interval from three API reads (stats, status, activity).

use std::{
    collections::{BTreeMap, VecDeque},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ironpost_api::{Activity, StatsLine, Status, path};
use ironpost_core::printable;
use ratatui::{
    Frame,
    crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::Line,
    widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table},
};

use crate::client::Client;

/// Samples of packets/s kept per interface for the history column.
const HISTORY: usize = 60;

/// One refresh's readings.
struct Reading {
    stats: StatsLine,
    status: Status,
    activity: Activity,
}

fn read(client: &Client) -> anyhow::Result<Reading> {
    Ok(Reading {
        stats: client.get(path::STATS)?,
        status: client.get(path::STATUS)?,
        activity: client.get(path::ACTIVITY)?,
    })
}

/// What the screen shows: the last reading (kept while the daemon does
/// not answer), the history of packets/s, and the last error.
#[derive(Default)]
struct View {
    last: Option<Reading>,
    history: BTreeMap<String, VecDeque<u64>>,
    error: Option<String>,
}

impl View {
    fn update(&mut self, r: anyhow::Result<Reading>) {
        match r {
            Ok(r) => {
                let mut rows = vec![("all".to_owned(), r.stats.traffic.total.pps)];
                rows.extend(
                    r.stats
                        .by_interface
                        .iter()
                        .map(|i| (i.interface.clone(), i.traffic.total.pps)),
                );
                for (name, pps) in rows {
                    let h = self.history.entry(name).or_default();
                    if h.len() == HISTORY {
                        h.pop_front();
                    }
                    h.push_back(pps.round() as u64);
                }
                self.last = Some(r);
                self.error = None;
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }
}

/// `ironpost top`.
pub fn top(socket: &Path, interval: f64) -> anyhow::Result<()> {
    if !(0.1..=3600.0).contains(&interval) {
        bail!("--interval {interval}: give between 0.1 and 3600 seconds");
    }
    let client = Client::new(socket);
    // No daemon: said before the screen is taken over.
    let mut view = View::default();
    view.update(Ok(read(&client)?));
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        bail!("ironpost top draws on a terminal; for a pipe use `ironpost stats --json`");
    }
    let interval = Duration::from_secs_f64(interval);
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let result = (|| -> anyhow::Result<()> {
        let mut next = Instant::now() + interval;
        loop {
            terminal.draw(|f| draw(f, &view, socket))?;
            let wait = next.saturating_duration_since(Instant::now());
            if event::poll(wait)? {
                match event::read()? {
                    Event::Key(k) if k.kind == KeyEventKind::Press => match k.code {
                        KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                            return Ok(());
                        }
                        _ => {}
                    },
                    // Drawn again at the new size by the next turn.
                    _ => {}
                }
                continue;
            }
            view.update(read(&client));
            next = Instant::now() + interval;
        }
    })();
    ratatui::try_restore().context("restoring the terminal")?;
    result
}

fn draw(f: &mut Frame, view: &View, socket: &Path) {
    let [head, traffic, middle, blocks] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Percentage(35),
        Constraint::Percentage(35),
        Constraint::Min(5),
    ])
    .areas(f.area());
    let Some(r) = &view.last else {
        return;
    };
    draw_head(f, head, r, view.error.as_deref(), socket);
    draw_traffic(f, traffic, r, view);
    let [sources, alerts] =
        Layout::horizontal([Constraint::Percentage(35), Constraint::Percentage(65)]).areas(middle);
    draw_sources(f, sources, r);
    draw_alerts(f, alerts, r);
    draw_blocks(f, blocks, r);
}

fn titled(title: &str) -> Block<'_> {
    Block::default()
        .borders(Borders::ALL)
        .title(title)
        .title_style(Style::default().add_modifier(Modifier::BOLD))
}

fn draw_head(f: &mut Frame, area: Rect, r: &Reading, error: Option<&str>, socket: &Path) {
    let s = &r.status;
    let ifaces: Vec<String> = s
        .interfaces
        .iter()
        .map(|i| format!("{} ({})", printable(&i.interface), i.mode))
        .chain(
            s.absent_interfaces
                .iter()
                .map(|a| format!("{} (ABSENT)", printable(&a.interface))),
        )
        .collect();
    let k = &s.detection.kernel;
    let first = format!(
        "ironpost {}  pid {}  up {}  {}  blocks {}/{}  q quits",
        s.version,
        s.pid,
        humantime::format_duration(Duration::from_secs(s.uptime_secs)),
        ifaces.join(", "),
        s.maps.blocks,
        s.maps.blocks_capacity
    );
    let second = match error {
        Some(e) => Line::styled(
            format!(
                "daemon not answering on {}: {e} (showing its last reading)",
                socket.display()
            ),
            Style::default().fg(Color::Red),
        ),
        None => Line::from(format!(
            "events {} delivered, lost {} (ring full {}, budget {})   signals {} delivered, \
             lost {}   alerts {}   auto blocks {}",
            s.events.delivered,
            s.events_lost,
            s.events.lost_ring_full,
            s.events.lost_budget,
            k.signals,
            k.signals_lost,
            s.detection
                .detectors
                .detectors
                .values()
                .map(|d| d.alerts)
                .sum::<u64>(),
            s.detection.response.blocked,
        )),
    };
    f.render_widget(
        Paragraph::new(vec![Line::from(first), second]).block(Block::default()),
        area,
    );
}

fn draw_traffic(f: &mut Frame, area: Rect, r: &Reading, view: &View) {
    let [table_area, spark_area] =
        Layout::horizontal([Constraint::Min(70), Constraint::Length(HISTORY as u16 + 2)])
            .areas(area);
    let header = Row::new(["INTERFACE", "PROTO", "PKT/S", "BYTES/S", "DROP/S", "DROPS"])
        .style(Style::default().add_modifier(Modifier::BOLD));
    let mut rows = Vec::new();
    let mut all = vec![("all".to_owned(), &r.stats.traffic)];
    all.extend(
        r.stats
            .by_interface
            .iter()
            .map(|i| (printable(&i.interface).into_owned(), &i.traffic)),
    );
    for (name, traffic) in &all {
        for (class, c) in traffic.classes() {
            if class != "total" && c.packets == 0 {
                continue;
            }
            let style = if c.dps > 0.0 {
                Style::default().fg(Color::Red)
            } else {
                Style::default()
            };
            rows.push(
                Row::new([
                    Cell::from(name.clone()),
                    Cell::from(class),
                    Cell::from(format!("{:.0}", c.pps)),
                    Cell::from(human_bytes(c.bps)),
                    Cell::from(format!("{:.0}", c.dps)),
                    Cell::from(c.drops.to_string()),
                ])
                .style(style),
            );
        }
    }
    let widths = [
        Constraint::Length(16),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(11),
        Constraint::Length(10),
        Constraint::Length(12),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(titled("traffic")),
        table_area,
    );
    let history: Vec<u64> = view
        .history
        .get("all")
        .map(|h| h.iter().copied().collect())
        .unwrap_or_default();
    f.render_widget(
        Sparkline::default()
            .block(titled("packets/s, all"))
            .data(&history)
            .style(Style::default().fg(Color::Cyan)),
        spark_area,
    );
}

fn draw_sources(f: &mut Frame, area: Rect, r: &Reading) {
    let rows = r.activity.sources.iter().map(|s| {
        Row::new([
            s.addr.to_string(),
            s.packets.to_string(),
            s.drops.to_string(),
        ])
    });
    let widths = [
        Constraint::Min(16),
        Constraint::Length(9),
        Constraint::Length(9),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(
                Row::new(["SOURCE", "PACKETS", "DROPS"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(titled("top sources (reported packets, 1-2 min)")),
        area,
    );
}

fn draw_alerts(f: &mut Frame, area: Rect, r: &Reading) {
    let lines: Vec<Line> = r
        .activity
        .alerts
        .iter()
        .map(|a| {
            let s = |k: &str| a.get(k).and_then(|v| v.as_str()).unwrap_or("-");
            let time = s("time");
            let clock = time.get(11..19).unwrap_or(time);
            let action = a
                .get("action")
                .and_then(|v| v.get("type"))
                .and_then(|v| v.as_str())
                .unwrap_or("-");
            let style = match s("severity") {
                "critical" | "high" => Style::default().fg(Color::Red),
                "medium" => Style::default().fg(Color::Yellow),
                _ => Style::default(),
            };
            Line::styled(
                printable(&format!(
                    "{clock} {:<8} {:<11} {} [{action}]",
                    s("severity"),
                    s("detector"),
                    s("summary")
                ))
                .into_owned(),
                style,
            )
        })
        .collect();
    f.render_widget(Paragraph::new(lines).block(titled("recent alerts")), area);
}

fn draw_blocks(f: &mut Frame, area: Rect, r: &Reading) {
    let rows = r.activity.blocks.iter().map(|b| {
        let left = match b.expires_in_secs {
            Some(s) => humantime::format_duration(Duration::from_secs(s.ceil() as u64)).to_string(),
            None => "never".into(),
        };
        Row::new([
            b.prefix.to_string(),
            printable(b.list.as_str()).into_owned(),
            left,
            b.packets.to_string(),
            printable(&b.reason).into_owned(),
        ])
    });
    let widths = [
        Constraint::Length(24),
        Constraint::Length(14),
        Constraint::Length(14),
        Constraint::Length(10),
        Constraint::Min(10),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(
                Row::new(["BLOCKED", "LIST", "TIME LEFT", "PACKETS", "REASON"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(titled("latest blocks in force")),
        area,
    );
}

/// Bytes per second in B, KB, MB or GB (decimal).
fn human_bytes(bps: f64) -> String {
    match bps {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} KB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_rates_read_as_an_operator_expects() {
        assert_eq!(human_bytes(0.0), "0 B");
        assert_eq!(human_bytes(1500.0), "1.5 KB");
        assert_eq!(human_bytes(2.5e6), "2.5 MB");
    }

    #[test]
    fn history_keeps_the_last_minute() {
        let mut v = View::default();
        for i in 0..(HISTORY as u64 + 10) {
            let mut stats = StatsLine::default();
            stats.traffic.total.pps = i as f64;
            v.update(Ok(Reading {
                stats,
                status: Status::default(),
                activity: Activity::default(),
            }));
        }
        let h = &v.history["all"];
        assert_eq!(h.len(), HISTORY);
        assert_eq!(h.back(), Some(&(HISTORY as u64 + 9)));
        v.update(Err(anyhow::anyhow!("gone")));
        assert!(v.last.is_some() && v.error.is_some());
    }
}
