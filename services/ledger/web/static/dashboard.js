// The finance dashboard: one EventSource, a render per snapshot, a countdown per second.
// No data is in the page itself; every figure arrives over /events. The token is in an
// HttpOnly cookie set by the sign-in page: this script never sees it, no address holds it.
"use strict";
(function () {
  const KINDS = {
    reserve_funded: "储备金拨付 funded", reserve_replenished: "储备金补充 replenished",
    advance_granted: "先行救助 advance", advance_voided: "撤销 voided",
    payment_confirmed: "支付 paid", escalated_advance: "转县级 escalated",
    escalated_paid: "县级支付 county paid", top_up: "补足 top-up",
    recovery_claimed: "追回 recovery", recovery_collected: "已追回 recovered",
    transitional_instalment: "过渡期 instalment",
  };
  const $ = (id) => document.getElementById(id);
  let snapshot = null;
  let clockOffsetMs = 0;   // server time - this screen's time
  let lastSeq = 0;
  let source = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  const cst = (iso) => new Date(iso).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai", hour12: false });

  function countdown(dueIso) {
    const left = new Date(dueIso).getTime() - (Date.now() + clockOffsetMs);
    const abs = Math.abs(left), h = Math.floor(abs / 3600e3), m = Math.floor(abs % 3600e3 / 60e3),
      s = Math.floor(abs % 60e3 / 1e3);
    const text = `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
    return { left, text: left <= 0 ? `超时 breached +${text}` : text };
  }

  function renderTowns(d) {
    const box = $("towns");
    box.replaceChildren(...d.towns.map((t) => {
      const size = t.size.fen || 1;
      const availPct = Math.max(0, Math.min(100, 100 * t.available.fen / size));
      const heldPct = Math.max(0, Math.min(100 - availPct, 100 * t.held.fen / size));
      const cls = "town" + (!t.opened ? " unopened" : t.available_ratio < 0.2 ? " low" : "");
      const row = el("div", { class: cls, id: "town-" + t.code },
        el("div", { class: "name", title: t.code }, `${t.name_zh} `, el("span", { class: "en" }, t.name_en)),
        el("div", { class: "bar", role: "img", "aria-label": `${t.name_en}: ${t.available.yuan} of ${t.size.yuan} yuan` },
          el("div", { class: "avail", id: "bar-" + t.code, style: `width:${availPct}%`,
            "data-available-fen": t.available.fen, "data-size-fen": t.size.fen }),
          el("div", { class: "held", style: `width:${heldPct}%` })),
        el("div", { class: "figure" }, t.opened ? `¥${t.available.yuan}` : "未记账 no postings"));
      return row;
    }));
  }

  function renderCases(d) {
    $("cases-count").textContent = `${d.open_cases_total} 件 open`;
    $("cases").replaceChildren(...d.open_cases.map((c) => {
      const cd = countdown(c.due_at);
      return el("tr", { class: cd.left <= 0 ? "breached" : cd.left < 2 * 3600e3 ? "soon" : "", "data-due": c.due_at },
        el("td", {}, c.case), el("td", {}, `${c.town_zh} `, el("span", { class: "en" }, c.town_en)),
        el("td", { class: "num" }, c.amount.yuan),
        el("td", {}, c.funded_by === "county_fund" ? "县级 county" : "镇储备 town"),
        el("td", { class: "left num" }, cd.text));
    }));
  }

  function tick() {
    for (const row of $("cases").children) {
      const cd = countdown(row.dataset.due);
      row.className = cd.left <= 0 ? "breached" : cd.left < 2 * 3600e3 ? "soon" : "";
      row.lastElementChild.textContent = cd.text;
    }
  }

  function renderToday(d) {
    for (const k of ["grants", "payments", "escalations"]) {
      $("today-" + k).textContent = "¥" + d.today[k].yuan;
      $("today-" + k + "-n").textContent = `${d.today[k].count} 笔 postings`;
    }
    $("day").textContent = d.day;
    $("county-fund").textContent = "¥" + d.county.fund.yuan;
    $("county-held").textContent = `县级预拨未付 held ¥${d.county.held.yuan}`;
  }

  function renderPostings(d) {
    $("postings").replaceChildren(...d.postings.map((p) =>
      el("tr", { class: p.seq > lastSeq && lastSeq > 0 ? "new" : "" },
        el("td", {}, cst(p.occurred_at)), el("td", {}, p.town_zh), el("td", {}, KINDS[p.kind] || p.kind),
        el("td", { class: "num" }, p.amount.yuan), el("td", {}, p.case),
        el("td", { class: "hash", title: p.hash }, p.hash.slice(0, 12) + "…"))));
    if (d.postings.length) lastSeq = d.postings[0].seq;
  }

  function renderChain(d) {
    $("head-hash").textContent = d.head ? `${d.head.hash} (${d.head.chain} #${d.head.chain_seq})` : "–";
    $("entries").textContent = d.entries;
    $("alerts").textContent = d.alerts;
    const v = d.verification;
    if (!v) { $("verify").textContent = "尚未校验 not yet verified"; return; }
    $("verify").replaceChildren(
      el("span", { class: v.ok ? "ok" : "bad" }, v.ok ? "✔ 通过 holds" : "✘ 不一致 DISAGREES"),
      ` ${cst(v.verified_at)} · ${v.entries_checked} 条 entries` + (v.problems.length ? " · " + v.problems[0] : ""));
    $("verify-hash").textContent = v.head_hash;
  }

  function render(envelope) {
    snapshot = envelope.data;
    clockOffsetMs = new Date(envelope.generated_at).getTime() - Date.now();
    renderTowns(snapshot); renderCases(snapshot); renderToday(snapshot); renderPostings(snapshot); renderChain(snapshot);
    $("updated").textContent = `更新于 updated ${cst(envelope.generated_at)}`;
    document.body.dataset.generation = String((Number(document.body.dataset.generation) || 0) + 1);
  }

  function status(state, text) { $("status").dataset.state = state; $("status-text").textContent = text; }

  async function connect() {
    // check the session once with a plain request: EventSource cannot tell a 401 apart
    const probe = await fetch("/api/snapshot", { credentials: "same-origin" });
    if (probe.status === 401) { location.assign("/signin"); return; }
    $("board").hidden = false;
    if (probe.ok) render(await probe.json());
    source = new EventSource("/events");  // the cookie rides along, on every reconnect
    source.addEventListener("snapshot", (ev) => { render(JSON.parse(ev.data)); status("live", "实时 live"); });
    source.onopen = () => status("live", "实时 live");
    source.onerror = () => status("down", "连接中断，重试中 reconnecting…");
  }

  connect();
  setInterval(tick, 1000);
})();
