"""The console in a real browser (Playwright driving the system's Chromium) through the
whole running stack: Qifeng's flood played entirely through the pages — the bureau reports
it, the town registers three urgent cases and confirms a payment, civil affairs decides
an approval and follows up the row a department pushed about the same household (a case
opened), finance verifies the ledger and downloads a statement and the disclosure
list — with a screenshot of each page in test-artifacts/console/. A town clerk cannot
reach another town by editing the address; a rejected submission shows its reason.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from deploy.local import stack as local_stack
from schemas.envelope import CST
from schemas.identity import check_char
from tests.e2e.stack_procs import ROOT, Running, in_thread, whole_stack
from tests.e2e.test_dashboard import chromium

pytestmark = pytest.mark.e2e


ARTIFACTS = ROOT / "test-artifacts" / "console"
QIFENG, TIANZHUANG = "370321101", "370321102"
DECIDE_MS = 30_000  # from submission to decision through Kafka, the processor and the casebook


def resident_id(n: int) -> str:
    first17 = f"370321198{n % 10}0101{n:03d}"[:17]
    return first17 + check_char(first17)


@pytest.fixture(scope="module")
def running(
    stack: local_stack.StackInfo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    # (the suite's servers, started by the `stack` fixture if they are not running)
    with whole_stack(stack, tmp_path_factory.mktemp("console-stack")) as r:
        yield r


def with_browser(work: Callable[[Browser], None]) -> None:
    def go() -> None:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
            try:
                work(b)
            finally:
                b.close()

    in_thread(go)


def sign_in(browser: Browser, running: Running, who: str, phone: bool = False) -> Page:
    size: ViewportSize = {"width": 412, "height": 915} if phone else {"width": 1280, "height": 900}
    context = browser.new_context(viewport=size, locale="zh-CN", accept_downloads=True)
    context.set_default_timeout(10_000)
    page: Page = context.new_page()
    page.goto(f"{running.console}/signin")
    page.get_by_label("访问令牌").fill(running.tokens[who])
    page.get_by_role("button", name=re.compile("登录")).click()
    page.wait_for_load_state()
    # the token is in an HttpOnly, SameSite=Strict cookie, never in an address
    assert running.tokens[who] not in page.url
    cookie = next(c for c in context.cookies() if c["name"] == "relief_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["secure"]
    return page


def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_flood_through_the_pages(running: Running) -> None:
    with_browser(lambda browser: flood(browser, running))


def push_hardship_list(running: Running, note: str) -> None:
    """Section 二: the medical-insurance bureau pushes its list through the API (departments
    send a CSV; the console is for the people who decide on it)."""
    row = f"{QIFENG},{resident_id(7)},continuing_expenditure,{note}"
    csv = f"town,household_head_id,category,note\n{row}\n"
    answer = httpx.post(
        f"{running.intake}/v1/hardship-lists",
        content=csv.encode("utf-8"),
        headers={
            "Authorization": f"Bearer {running.tokens['department']}",
            "Content-Type": "text/csv",
            "Idempotency-Key": str(uuid.uuid4()),
        },
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 1


def flood(browser: Browser, running: Running) -> None:
    incident = f"flood-{datetime.now(UTC):%m%d%H%M%S}"
    hardship_note = f"住院三次-{incident}"
    push_hardship_list(running, hardship_note)

    # the bureau reports the flood in Qifeng with the households hit, pasted
    bureau = sign_in(browser, running, "bureau")
    assert bureau.url.endswith("/bureau"), bureau.content()[:3000]
    bureau.locator("#incident_id").fill(incident)
    bureau.locator("#town").select_option(QIFENG)
    bureau.locator("#disaster_subtype").select_option("flood")
    bureau.locator("#household_head_ids").fill("\n".join(resident_id(i) for i in (1, 2, 3)))
    bureau.get_by_role("button", name=re.compile("^报告")).click()
    expect(bureau.locator("#incident-outcome .received")).to_be_visible()
    expect(bureau.locator("#incident-outcome [data-status=decided]")).to_be_visible(
        timeout=DECIDE_MS
    )
    shot(bureau, "1-bureau-incident")

    # Qifeng's clerk, on a phone: three urgent cases, each decided on the page
    town = sign_in(browser, running, "qifeng", phone=True)
    assert town.url.endswith(f"/towns/{QIFENG}")
    hint = town.locator("#id-hint")
    town.locator("#household_head_id").fill(
        resident_id(1)[:-1] + ("0" if resident_id(1)[-1] != "0" else "1")
    )
    expect(hint).to_contain_text("校验位")  # checked as it is typed
    for n, yuan in ((1, "800"), (2, "650.50"), (3, "1000")):
        town.locator("#household_head_id").fill(resident_id(n))
        expect(hint).to_contain_text("有效")
        town.locator("#amount_yuan").fill(yuan)
        town.locator("#reason").fill("房屋进水，生活用品损毁")
        town.locator("form details").first.evaluate("d => { d.open = true }")
        town.locator("#incident_id").fill(incident)
        # the last case's answer leaves the page first: this one's is awaited, not it
        town.locator("#register-outcome").evaluate("el => { el.innerHTML = '' }")
        town.get_by_role("button", name=re.compile("^提交")).click()
        outcome = town.locator("#register-outcome [data-status=decided]")
        expect(outcome).to_be_visible(timeout=DECIDE_MS)
        expect(outcome).to_contain_text("先行救助已批准")
        if n == 1:
            expect(outcome).to_contain_text("¥800.00")
    # the ledger stores the holds a moment after the casebook has the decisions
    for _ in range(60):
        town.reload()
        if town.locator("#reserve-held").inner_text().strip() == "¥2,450.50":
            break
        town.wait_for_timeout(500)
    expect(town.locator("#reserve-held")).to_have_text("¥2,450.50")
    rows = town.locator("table.open-cases tbody tr[data-case]")
    expect(rows).to_have_count(3)
    expect(town.locator("table.open-cases")).to_contain_text("还剩 23小时")
    shot(town, "2-town")

    # a bad ID number is refused on the page, with the reason, and nothing is sent
    town.locator("#household_head_id").fill("37032119800101001")
    town.locator("#amount_yuan").fill("500")
    town.locator("#reason").fill("测试")
    town.get_by_role("button", name=re.compile("^提交")).click()
    expect(town.locator("#register-outcome .problem")).to_contain_text("身份证号应为18位")

    # the first case is paid, with its bank reference
    first_case = rows.first.get_attribute("data-case")
    first_amount = rows.first.locator("td.num").inner_text().strip()
    assert first_case and first_amount in ("¥800.00", "¥650.50", "¥1,000.00")
    town.goto(f"{running.console}/towns/{QIFENG}/cases/{first_case}")
    town.locator("#bank_reference").fill("ICBC-20250720-0001")
    town.get_by_role("button", name=re.compile("^确认付款")).click()
    paid = town.locator("#pay-outcome [data-status=decided]")
    expect(paid).to_be_visible(timeout=DECIDE_MS)
    expect(paid).to_contain_text("已付款")
    shot(town, "3-case-paid")

    # the same payment sent again is rejected by the processor: the reason on the page
    town.get_by_role("button", name=re.compile("^确认付款")).click()
    rejected = town.locator("#pay-outcome [data-status=rejected]")
    expect(rejected).to_be_visible(timeout=DECIDE_MS)
    assert len(rejected.locator(".reason").inner_text().strip()) > 5
    shot(town, "4-rejected")

    # editing the address to another town's case or page: refused
    for path in (f"/towns/{TIANZHUANG}/cases/{first_case}", f"/towns/{TIANZHUANG}"):
        response = town.goto(f"{running.console}{path}")
        assert response is not None and response.status == 403
        expect(town.locator("h1")).to_contain_text("只能查看本镇")
    shot(town, "5-other-town-refused")

    # civil affairs: an expenditure case above the town's authority, approved with reasons
    civil = sign_in(browser, running, "civil_affairs")
    civil.locator("#e-town").select_option(QIFENG)
    civil.locator("#e-id").fill(resident_id(7))
    civil.locator("#e-category").select_option("serious_illness")
    civil.locator("#e-amount").fill("5000")
    civil.locator("#e-reason").fill("重病住院，自付费用高")
    civil.get_by_role("button", name=re.compile("^提交")).first.click()
    expect(civil.locator("#expenditure-outcome [data-status=decided]")).to_contain_text(
        "需县级审批", timeout=DECIDE_MS
    )
    civil.reload()
    item = civil.locator("section[aria-labelledby=h-awaiting_approval] .inbox-item").first
    expect(item).to_contain_text("¥5,000.00")
    item.locator("textarea[name=reasons]").fill("经审核，符合重特大疾病救助条件")
    item.get_by_role("button", name=re.compile("^决定")).click()
    expect(item.locator("[data-status=decided]")).to_contain_text("已批准", timeout=DECIDE_MS)
    shot(civil, "6-civil-affairs-approved")
    approved_case = item.get_attribute("data-case")
    assert approved_case

    # the department's list named the same household: civil affairs follows the row up in
    # writing (section 二, P9) with the case it opened; the row leaves the waiting list
    row = civil.locator("article.hardship-row", has_text=hardship_note)
    expect(row).to_contain_text("持续性支出家庭")
    assert resident_id(7) not in civil.content()  # the household by its keyed hash only
    row.locator("input[value=case_opened]").check()
    row.locator("input[name=case_id]").fill(approved_case)
    row.locator("textarea[name=reasons]").fill("入户核实：大病住院，已登记支出型救助并批准")
    row.locator("input[name=decided_by]").fill("社会救助科 李明")
    row.get_by_role("button", name=re.compile("^答复")).click()
    expect(row.locator("[data-status=decided]")).to_be_visible(timeout=DECIDE_MS)
    civil.reload()
    expect(civil.locator("article.hardship-row", has_text=hardship_note)).to_have_count(0)
    done = civil.locator("#hardship-done tr", has_text="社会救助科 李明")
    expect(done).to_contain_text("已立案救助")
    expect(done.get_by_role("link", name=approved_case)).to_be_visible()
    shot(civil, "6b-civil-affairs-hardship")

    # finance: the reserves live, verify with its head hash, a statement and the disclosure
    finance = sign_in(browser, running, "finance")
    expect(finance.locator(f"tr[data-town='{QIFENG}']")).to_contain_text(
        first_amount, timeout=15_000
    )
    finance.get_by_role("button", name=re.compile("立即校验")).click()
    expect(finance.locator("#head-hash")).to_have_text(re.compile(r"^[0-9a-f]{64}$"))
    finance.locator("#s-town").select_option(QIFENG)
    with finance.expect_download() as statement:
        finance.get_by_role("button", name=re.compile("下载 CSV")).click()
    text = Path(statement.value.path()).read_text("utf-8")
    assert "town_reserve" in text
    shot(finance, "7-finance")

    period = datetime.now(CST).strftime("%Y-%m")
    finance.goto(f"{running.console}/disclosures/{QIFENG}?period={period}")
    # the approved expenditure case is on Qifeng's public list (P7); the CSV downloads
    expect(finance.locator("table")).to_contain_text("¥5,000.00")
    with finance.expect_download() as listed:
        finance.locator("#disclosure-csv").click()
    assert "5000.00" in Path(listed.value.path()).read_text("utf-8-sig")
    shot(finance, "8-disclosure")

    town_png = ARTIFACTS / "2-town.png"
    docs = ROOT / "docs" / "console-town.png"
    if not docs.exists():
        shutil.copyfile(town_png, docs)
