"""Writes the provisioned Grafana dashboards (dashboards/*.json) from the panel lists
below: `python -m deploy.grafana.build`. A test checks the JSON files are up to date and
evaluates every query against a real Prometheus (tests/integration/metrics)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DASHBOARDS = HERE / "dashboards"
T = 'town=~"$town"'
DS = {"type": "prometheus", "uid": "${datasource}"}

# (title, type, unit, [(expr, legend)], width)
Panel = tuple[str, str, str, list[tuple[str, str]], int]

FINANCE: list[Panel] = [
    ("储备金可用 Reserve available (yuan)", "bargauge", "currencyCNY",
     [(f"relief_reserve_available_yuan{{{T}}}", "{{town}}")], 12),
    ("储备金可用比例 Reserve available (% of size)", "gauge", "percent",
     [(f"100 * relief_reserve_available_yuan{{{T}}} / relief_reserve_size_yuan{{{T}}}",
       "{{town}}")], 12),
    ("已预拨 / 已支付 / 已补充 Held, paid, replenished", "timeseries", "currencyCNY",
     [(f"sum(relief_reserve_held_yuan{{{T}}})", "held 已预拨"),
      (f"sum(relief_reserve_paid_yuan{{{T}}})", "paid 已支付"),
      (f"sum(relief_reserve_replenished_yuan{{{T}}})", "replenished 已补充")], 12),
    ("账簿与处理器核对 Ledger minus processor (yuan, 0 = reconciled)", "timeseries",
     "currencyCNY",
     [(f"relief_ledger_reserve_available_yuan{{{T}}} - on(town) "
       f"relief_reserve_available_yuan{{{T}}}", "{{town}}")], 12),
    ("先行救助 Advances granted (24 h)", "stat", "short",
     [(f"sum by (funded_by) (increase(relief_advances_granted_total{{{T}}}[1d]))",
       "{{funded_by}}")], 6),
    ("先行救助金额 Advanced (yuan, 24 h)", "stat", "currencyCNY",
     [(f"sum(increase(relief_advances_granted_yuan_total{{{T}}}[1d]))", "advanced")], 6),
    ("拒绝原因 Advances refused by reason (24 h)", "bargauge", "short",
     [(f"sum by (reason) (increase(relief_advances_refused_total{{{T}}}[1d]))",
       "{{reason}}")], 12),
    ("请求至支付 Request to payment (p50, p90)", "timeseries", "s",
     [(f"histogram_quantile(0.5, sum by (le) "
       f"(rate(relief_time_to_payment_seconds_bucket{{{T}}}[1d])))", "p50"),
      (f"histogram_quantile(0.9, sum by (le) "
       f"(rate(relief_time_to_payment_seconds_bucket{{{T}}}[1d])))", "p90")], 8),
    ("24 小时内支付 Paid within 24 h (share, 1 d)", "stat", "percentunit",
     [(f'sum(increase(relief_time_to_payment_seconds_bucket{{le="86400.0",{T}}}[1d])) / '
       f"sum(increase(relief_time_to_payment_seconds_count{{{T}}}[1d]))", "within 24 h")], 8),
    ("请求至预拨 Request to advance (p90)", "timeseries", "s",
     [(f"histogram_quantile(0.9, sum by (le) "
       f"(rate(relief_time_to_advance_seconds_bucket{{{T}}}[1d])))", "p90")], 8),
    ("期限 Deadlines warned / met / breached (24 h)", "bargauge", "short",
     [(f"sum by (deadline, outcome) (increase(relief_deadlines_total{{{T}}}[1d]))",
       "{{deadline}} {{outcome}}")], 12),
    ("待支付急难案件 Open urgent cases", "stat", "short",
     [(f"sum(relief_urgent_cases_open{{{T}}})", "open 待支付"),
      (f"sum(relief_urgent_cases_due_soon{{{T}}})", "warned 已预警"),
      (f"sum(relief_urgent_cases_overdue{{{T}}})", "overdue 超时")], 12),
    ("一事一议 / 待审批 Deliberations and approvals pending", "stat", "short",
     [(f"sum(relief_deliberations_pending{{{T}}})", "deliberations 一事一议"),
      (f"sum(relief_approvals_pending{{{T}}})", "approvals 待审批")], 8),
    ("县级资金 County fund", "stat", "currencyCNY",
     [("relief_ledger_county_fund_yuan", "county fund 县救助资金"),
      (f"sum(relief_county_held_yuan{{{T}}})", "held for escalations 县级预拨"),
      (f"sum(increase(relief_escalated_yuan_total{{{T}}}[1d]))", "escalated 24 h 转县级")], 8),
    ("追回 Recoveries (30 d)", "stat", "short",
     [(f"sum(increase(relief_recoveries_total{{{T}}}[30d]))", "claims"),
      (f"sum(increase(relief_recoveries_yuan_total{{{T}}}[30d]))", "yuan")], 8),
    ("账簿校验 Ledger verify", "stat", "short",
     [("relief_ledger_verify_ok", "ok (1) 通过"),
      ("time() - relief_ledger_verify_timestamp_seconds", "seconds since 距上次"),
      ("relief_ledger_verify_problems", "problems 问题")], 12),
    ("储备金拦截 Reserve-guard alerts", "stat", "short",
     [(f"sum(relief_ledger_alerts_total{{{T}}})", "refused postings")], 12),
]  # fmt: skip

OPERATIONS: list[Panel] = [
    ("产生记录 Records produced /s by topic", "timeseries", "ops",
     [("sum by (topic) (rate(relief_records_produced_total[$__rate_interval]))",
       "{{topic}}")], 12),
    ("Kafka 写入 Records appended /s by stream", "timeseries", "ops",
     [("sum by (stream) (rate(relief_kafka_end_offset[$__rate_interval]))", "{{stream}}")], 12),
    ("处理器决定 Processor decisions /s", "timeseries", "ops",
     [("sum by (type) (rate(relief_decisions_total[$__rate_interval]))", "{{type}}"),
      ("sum(rate(relief_processor_records_consumed_total[$__rate_interval]))",
       "intake records consumed")], 12),
    ("账簿记账 Ledger postings /s", "timeseries", "ops",
     [("sum by (kind) (rate(relief_ledger_postings_total[$__rate_interval]))", "{{kind}}"),
      ("sum(rate(relief_ledger_batches_total[$__rate_interval]))", "batches")], 12),
    ("消费延迟 Consumer lag per partition", "timeseries", "short",
     [("relief_consumer_lag", "{{consumer}} {{stream}}/{{partition}}")], 12),
    ("拒收记录 Rejected records by reason (1 h)", "bargauge", "short",
     [("sum by (source_topic, reason) (increase(relief_rejected_records_total[1h]))",
       "{{source_topic}} {{reason}}"),
      ('sum by (stream) (delta(relief_kafka_end_offset{stream="rejected"}[1h]))',
       "on relief.rejected.v1")], 12),
    ("PostgreSQL 事务延迟 Transaction latency (p50, p99)", "timeseries", "s",
     [("histogram_quantile(0.5, sum by (le, operation) "
       "(rate(relief_ledger_pg_transaction_seconds_bucket[$__rate_interval])))",
       "p50 {{operation}}"),
      ("histogram_quantile(0.99, sum by (le, operation) "
       "(rate(relief_ledger_pg_transaction_seconds_bucket[$__rate_interval])))",
       "p99 {{operation}}")], 12),
    ("处理批次 Processor batches /s", "timeseries", "ops",
     [("sum(rate(relief_processor_batches_total[$__rate_interval]))", "batches")], 12),
    ("服务 Targets up", "stat", "short", [('up{job=~"relief-.*"}', "{{job}}")], 8),
    ("Kafka 可达 Lag readable", "stat", "short", [("relief_kafka_lag_up", "kafka")], 8),
    ("看板连接 Dashboards connected", "stat", "short",
     [("relief_dashboard_clients", "SSE clients")], 8),
]  # fmt: skip


def _panel(n: int, panel: Panel, x: int, y: int) -> dict[str, Any]:
    title, kind, unit, targets, width = panel
    return {
        "id": n,
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": width, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard(uid: str, title: str, panels: list[Panel], with_town: bool) -> dict[str, Any]:
    laid: list[dict[str, Any]] = []
    x = y = 0
    for n, p in enumerate(panels, start=1):
        if x + p[4] > 24:
            x, y = 0, y + 8
        laid.append(_panel(n, p, x, y))
        x += p[4]
    variables: list[dict[str, Any]] = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "数据源"}
    ]
    if with_town:
        variables.append(
            {
                "name": "town",
                "label": "镇 Town",
                "type": "query",
                "datasource": DS,
                "query": "label_values(relief_reserve_size_yuan, town)",
                "includeAll": True,
                "allValue": ".*",
                "multi": True,
                "current": {"text": "All", "value": "$__all"},
                "refresh": 2,
            }
        )
    return {
        "uid": uid,
        "title": title,
        "tags": ["relief", "huantai"],
        "timezone": "Asia/Shanghai",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": variables},
        "panels": laid,
    }


def build() -> dict[str, dict[str, Any]]:
    return {
        "finance.json": dashboard(
            "relief-finance", "桓台救助资金 Relief finance", FINANCE, with_town=True
        ),
        "operations.json": dashboard(
            "relief-operations", "桓台救助运行 Relief operations", OPERATIONS, with_town=False
        ),
    }


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":
    DASHBOARDS.mkdir(exist_ok=True)
    for name, board in build().items():
        (DASHBOARDS / name).write_text(render(board), encoding="utf-8")
        print(f"wrote {DASHBOARDS / name}")
