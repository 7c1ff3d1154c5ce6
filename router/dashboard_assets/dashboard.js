/* The CascadeFlow Router dashboard: reads /dashboard/api/summary and draws it. Every value from the API goes into
   the page through textContent or SVG attributes, never as HTML. */
"use strict";
(function () {
  const ROUTES = [
    ["cache", "cache hit", "c-cache"], ["draft", "draft served", "c-draft"], ["escalated", "escalated", "c-escalated"],
    ["strong", "strong directly", "c-strong"], ["pass_through", "pass-through", "c-pass"], ["failed", "failed", "c-failed"],
  ];
  const $ = (selector) => document.querySelector(selector);

  const fmt = {
    usd(x) {
      if (x == null || !isFinite(x)) return "–";
      const size = Math.abs(x);
      return (x < 0 ? "-$" : "$") + size.toFixed(size >= 1 ? 2 : 4);
    },
    pct(x) { return x == null || !isFinite(x) ? "–" : (100 * x).toFixed(1) + "%"; },
    int(x) { return x == null ? "–" : String(x); },
    p(x) { return x == null ? "–" : Number(x).toFixed(3); },
  };

  function timeFormat(bucket) {
    return (t) => {
      const iso = new Date(t * 1000).toISOString();
      return bucket < 86400 ? iso.slice(11, 16) : iso.slice(5, 10);
    };
  }

  function setKpi(name, text) {
    for (const node of document.querySelectorAll(`[data-kpi="${name}"]`)) node.textContent = text;
  }

  function notice(text, kind) {
    const node = document.createElement("p");
    node.className = `notice ${kind || ""}`;
    node.textContent = text;
    $("#notices").appendChild(node);
  }

  function renderNotices(data) {
    $("#notices").textContent = "";
    const log = data.sources.outcome_log, spend = data.sources.spend_ledger;
    if (!log.enabled) notice("The outcome log is off (outcome_log.enabled: false): routes, rates and quality need it.", "warn");
    else if (log.error) notice(`The outcome log could not be read: ${log.error}`, "warn");
    else if (log.truncated) notice(`Only the newest ${log.read} requests of this range are counted.`, "warn");
    if (spend.enabled && spend.error) notice(`The spend ledger could not be read: ${spend.error}`, "warn");
    if (log.enabled && data.quality.served.n === 0) {
      notice(`No exploration labels in this range yet: a share of served drafts (labels.exploration_rate = ` +
        `${data.sources.exploration_rate}) is also answered by the strong model in the background to measure this.`);
    }
  }

  function renderKpis(data) {
    const t = data.totals, q = data.quality.served;
    setKpi("saved_usd", fmt.usd(t.saved_usd));
    setKpi("saved_share", fmt.pct(t.saved_share));
    setKpi("actual_usd", fmt.usd(t.actual_usd));
    setKpi("strong_only_usd", fmt.usd(t.strong_only_usd));
    setKpi("requests", fmt.int(t.requests));
    setKpi("acceptance_rate", fmt.pct(t.acceptance_rate));
    setKpi("escalation_rate", fmt.pct(t.escalation_rate));
    setKpi("cache_hit_rate", fmt.pct(t.cache_hit_rate));
    setKpi("quality_share", fmt.pct(q.share));
    setKpi("quality_low", fmt.pct(q.low));
    setKpi("quality_high", fmt.pct(q.high));
    setKpi("quality_n", fmt.int(q.n));
  }

  function cumulative(values) {
    let sum = 0;
    return values.map((v) => (sum += v));
  }

  function renderCharts(data) {
    const series = data.series, xs = series.map((p) => p.t), xf = timeFormat(data.window.bucket_s);
    const money = (v) => fmt.usd(v);
    const savings = [
      { name: "always strong", cls: "c-strong", values: cumulative(series.map((p) => p.strong_only_usd)) },
      { name: "actual", cls: "c-draft", values: cumulative(series.map((p) => p.actual_usd)) },
    ];
    Charts.line($("#chart-savings .chart"), { x: xs, series: savings, xFormat: xf, yFormat: money, yMin: 0,
      title: "Cumulative cost: always strong against actual", fillBetween: "c-saved", fillName: "saved" });
    Charts.legend($("#chart-savings .legend"), savings.concat([{ name: `saved ${fmt.usd(data.totals.saved_usd)}`, cls: "c-saved" }]));

    const stacks = ROUTES.map(([key, name, cls]) => ({ name: name, cls: cls, values: series.map((p) => p.routes[key] || 0) }));
    Charts.bars($("#chart-routes .chart"), { x: xs, stacks: stacks, xFormat: xf, yFormat: (v) => String(Math.round(v)),
      title: "Requests per route" });
    Charts.legend($("#chart-routes .legend"), stacks);

    const rates = [
      { name: "draft accepted", cls: "c-draft", values: series.map((p) => p.acceptance_rate) },
      { name: "escalated", cls: "c-escalated", values: series.map((p) => p.escalation_rate) },
      { name: "cache hit", cls: "c-cache", values: series.map((p) => p.cache_hit_rate) },
    ];
    Charts.line($("#chart-rates .chart"), { x: xs, series: rates, xFormat: xf, yFormat: fmt.pct, yMin: 0, yMax: 1,
      title: "Acceptance, escalation and cache hit rates" });
    Charts.legend($("#chart-rates .legend"), rates);

    const quality = series.map((p) => p.quality);
    Charts.line($("#chart-quality .chart"), {
      x: xs, xFormat: xf, yFormat: fmt.pct, yMin: 0, yMax: 1, title: "Served drafts the strong model agreed with",
      series: [{ name: "agreed", cls: "c-quality", values: quality.map((q) => q.share) }],
      band: { cls: "c-quality", low: quality.map((q) => q.low), high: quality.map((q) => q.high) },
      tipFormat: (v, i) => `${fmt.pct(v)} of ${quality[i].n} (95% CI ${fmt.pct(quality[i].low)}–${fmt.pct(quality[i].high)})`,
      empty: "no exploration labels in this range",
    });
    Charts.legend($("#chart-quality .legend"), [{ name: "share agreed", cls: "c-quality" }, { name: "95% Wilson interval", cls: "c-band" }]);

    const rules = data.quality.by_rule.filter((r) => r.served.n > 0);
    Charts.hbars($("#chart-rules .chart"), {
      xMax: 1, xFormat: fmt.pct, empty: "no labelled served drafts in this range",
      rows: rules.map((r) => ({ label: r.rule, parts: [{ value: r.served.share, cls: "c-quality", name: "agreed" }],
        whisker: [r.served.low, r.served.high], text: `${fmt.pct(r.served.share)} of ${r.served.n}` })),
    });

    Charts.hbars($("#chart-models .chart"), {
      xFormat: money, empty: "no spend in this range",
      rows: data.spend_by_model.map((m) => ({ label: m.model, text: fmt.usd(m.usd), parts: [
        { value: m.served_usd, cls: "c-draft", name: "answers served" },
        { value: m.rejected_draft_usd, cls: "c-escalated", name: "drafts thrown away" }] })),
    });
    Charts.legend($("#chart-models .legend"), [{ name: "answers served", cls: "c-draft" }, { name: "drafts thrown away", cls: "c-escalated" }]);

    $("#users-source").textContent = data.spend_by_user.source === "spend_ledger" ? "spend ledger" : "outcome log, by tenant";
    Charts.hbars($("#chart-users .chart"), {
      xFormat: money, empty: "no spend in this range",
      rows: data.spend_by_user.rows.map((u) => ({ label: u.user, text: `${fmt.usd(u.actual_usd)} · saved ${fmt.usd(u.saved_usd)}`,
        parts: [{ value: u.actual_usd, cls: "c-draft", name: "actual" },
          { value: Math.max(0, u.saved_usd), cls: "c-saved", name: "saved against always strong" }] })),
    });
    Charts.legend($("#chart-users .legend"), [{ name: "actual", cls: "c-draft" }, { name: "saved against always strong", cls: "c-saved" }]);
  }

  function cell(row, text, cls, title) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (title) td.title = title;
    row.appendChild(td);
    return td;
  }

  function verdict(d) {
    if (d.confidence == null) return "–";
    if (d.accept_threshold == null) return fmt.p(d.confidence);
    const sign = d.confidence >= d.accept_threshold ? "≥" : "<";
    return `${fmt.p(d.confidence)} ${sign} ${fmt.p(d.accept_threshold)}${d.accept_threshold_from === "current" ? "*" : ""}`;
  }

  function renderDecisions(data) {
    const body = $("#decisions tbody"), content = data.sources.content_logging;
    body.textContent = "";
    $("#decisions").classList.toggle("with-prompt", content);
    for (const d of data.decisions) {
      const row = document.createElement("tr");
      row.dataset.requestId = d.request_id;
      cell(row, new Date(d.time * 1000).toISOString().replace("T", " ").slice(0, 19), "nowrap", d.request_id);
      cell(row, d.route, `route r-${d.route}`);
      cell(row, d.requested_model, "", d.tenant);
      cell(row, d.draft_model ? `${d.draft_model} → ${d.strong_model}` : "–");
      cell(row, d.router_p_good == null ? "–" : `${fmt.p(d.router_p_good)} / ${fmt.p(d.skip_threshold)}`, "num", d.router_version || "");
      cell(row, verdict(d), "num", d.verifier_p_good != null ? "trained verifier" : "hand-weighted score");
      cell(row, `${fmt.usd(d.cost_usd)} / ${fmt.usd(d.strong_only_cost_usd)}`, "num");
      cell(row, d.label == null ? "–" : d.label ? "agreed" : "disagreed", d.label == null ? "" : d.label ? "good" : "bad",
        [d.label_source, d.label_detail].filter(Boolean).join(": "));
      cell(row, d.reason, "reason");
      if (content) cell(row, d.prompt || "", "prompt");
      body.appendChild(row);
    }
    $("#decisions-empty").hidden = data.decisions.length > 0;
  }

  let last = null;

  function render(data) {
    renderNotices(data);
    renderKpis(data);
    renderCharts(data);
    renderDecisions(data);
  }

  async function load() {
    const days = $("#days").value;
    $("#refresh").disabled = true;
    try {
      const response = await fetch(`/dashboard/api/summary?days=${encodeURIComponent(days)}`,
        { credentials: "same-origin", headers: { accept: "application/json" } });
      if (!response.ok) throw new Error(`the summary answered HTTP ${response.status}`);
      const data = await response.json();
      render(data);
      last = data;
      $("#updated").textContent = `updated ${new Date(data.generated_at * 1000).toISOString().slice(11, 19)} UTC`;
      document.body.dataset.loaded = "true";
    } catch (error) {
      $("#notices").textContent = "";
      notice(String(error.message || error), "warn");
      document.body.dataset.loaded = "error";
    } finally {
      $("#refresh").disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#days").addEventListener("change", load);
    $("#refresh").addEventListener("click", load);
    let resizing = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => { if (last) renderCharts(last); }, 150);
    });
    load();
    setInterval(() => { if (!document.hidden) load(); }, 60000);
  });
})();
