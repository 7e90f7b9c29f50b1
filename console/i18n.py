"""Chinese and English labels: the console's own words, and names from the catalogue.

Tag names come from the catalogue: the Chinese display name (``生命周期_客户状态``) and
the English id (``lifecycle_stage``); value names carry both languages
(``潜在客户 potential``), and category prefixes both (``生命周期_`` / ``lifecycle_``).
:class:`Labels` picks the side of each for the reader's language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LANGUAGES", "Labels", "pick_language", "split_name"]

LANGUAGES = ("zh", "en")

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")

# The console's own words. Keys are stable ids used by the templates.
_WORDS: dict[str, tuple[str, str]] = {
    "app": ("标签控制台", "Tagsmith console"),
    "nav.catalogue": ("标签目录", "Catalogue"),
    "nav.customers": ("客户", "Customers"),
    "nav.audiences": ("人群圈选", "Audiences"),
    "nav.models": ("模型", "Models"),
    "nav.runs": ("运行与健康", "Runs & health"),
    "signin": ("登录", "Sign in"),
    "signout": ("退出", "Sign out"),
    "signin.key": ("API 密钥", "API key"),
    "signin.help": (
        "用 'tagsmith serve keys add NAME --role ROLE' 创建的密钥登录；"
        "会话保存在仅限 HTTP 的 Cookie 中。",
        "Sign in with a key made by 'tagsmith serve keys add NAME --role ROLE'; the session "
        "lives in an HttpOnly cookie.",
    ),
    "signed_in_as": ("当前用户", "Signed in as"),
    "role": ("角色", "role"),
    "tag": ("标签", "Tag"),
    "tags": ("标签", "Tags"),
    "category": ("类别", "Category"),
    "owner": ("负责人", "Owner"),
    "status": ("状态", "Status"),
    "version": ("版本", "Version"),
    "source": ("来源", "Source"),
    "sensitivity": ("敏感级别", "Sensitivity"),
    "refresh": ("更新频率", "Refresh"),
    "coverage": ("覆盖率", "Coverage"),
    "coverage.recent": ("近期运行覆盖率", "Coverage over recent runs"),
    "customers": ("客户数", "Customers"),
    "share": ("占比", "Share"),
    "change": ("变化", "Change"),
    "value": ("取值", "Value"),
    "values": ("取值", "Values"),
    "score": ("分数", "Score"),
    "as_of": ("数据日期", "As of"),
    "since": ("起始", "Since"),
    "definition": ("定义", "Definition"),
    "description": ("说明", "Description"),
    "rule": ("规则", "Rule"),
    "model": ("模型", "Model"),
    "sizes_over_time": ("各取值人数随时间变化", "Value sizes over time"),
    "all": ("全部", "All"),
    "filter": ("筛选", "Filter"),
    "search": ("搜索", "Search"),
    "customer.search": ("按客户编号查找", "Find a customer by id"),
    "customer.id": ("客户编号", "Customer id"),
    "customer.open": ("打开", "Open"),
    "customer.profile": ("客户画像", "Customer profile"),
    "customer.current": ("当前标签", "Current tags"),
    "customer.history": ("标签历史", "Tag history"),
    "customer.not_found": ("最新快照中没有这个客户。", "No such customer in the latest snapshot."),
    "customer.why": ("原因", "Why"),
    "audience.expression": ("圈选表达式", "Audience expression"),
    "audience.count": ("人数", "Count"),
    "audience.preview": ("预览", "Preview"),
    "audience.sample": ("样例客户", "Sample customers"),
    "audience.save": ("保存", "Save"),
    "audience.name": ("名称", "Name"),
    "audience.export": ("导出 CSV", "Export CSV"),
    "audience.saved": ("已保存的人群", "Saved audiences"),
    "audience.delete": ("删除", "Delete"),
    "audience.of": ("占全部客户", "of all customers"),
    "audience.help": (
        "用规则语言组合标签，例如 lifecycle_stage = 'dormant' and old_customer。",
        "Combine tags in the rule language, e.g. lifecycle_stage = 'dormant' and old_customer.",
    ),
    "audience.columns": ("可用的列", "Columns you may use"),
    "models.registered": ("已注册模型", "Registered models"),
    "models.champion": ("冠军", "Champion"),
    "models.challenger": ("挑战者", "Challenger"),
    "models.versions": ("版本", "Versions"),
    "models.gates": ("门禁表", "Gate table"),
    "models.history": ("别名历史", "Alias history"),
    "models.promote": ("晋升", "Promote"),
    "models.rollback": ("回滚", "Roll back"),
    "models.reason": ("原因", "Reason"),
    "models.force": (
        "即使门禁未通过也晋升（须填写原因）",
        "Promote even if gates fail (needs a reason)",
    ),
    "models.confirm": ("确认", "Confirm"),
    "models.cancel": ("取消", "Cancel"),
    "models.metrics": ("指标", "Metrics"),
    "models.registered_at": ("注册时间", "Registered"),
    "models.by": ("操作人", "By"),
    "models.action": ("动作", "Action"),
    "models.from": ("从", "From"),
    "models.to": ("到", "To"),
    "models.none": ("尚无注册模型。", "No registered models yet."),
    "runs.runs": ("打标运行", "Tagging runs"),
    "runs.flags": ("覆盖率告警", "Coverage flags"),
    "runs.started": ("开始", "Started"),
    "runs.duration": ("耗时", "Duration"),
    "runs.notices": ("提示", "Notices"),
    "runs.no_flags": ("最新快照没有告警。", "No flags on the latest snapshot."),
    "runs.none": (
        "尚无打标运行：先执行 'tagsmith tags run'。",
        "No tagging run yet: run 'tagsmith tags run'.",
    ),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "error": ("出错了", "Something is wrong"),
    "back": ("返回", "Back"),
    "language": ("English", "中文"),
}


def pick_language(cookie: str | None, accept_language: str | None) -> str:
    """The reader's language: the cookie, else the browser's first zh/en preference."""
    if cookie in LANGUAGES:
        return str(cookie)
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()
        if code.startswith("zh"):
            return "zh"
        if code.startswith("en"):
            return "en"
    return "en"


def split_name(name: str) -> tuple[str, str]:
    """(Chinese part, other part) of a bilingual name such as ``潜在客户 potential``."""
    words = name.split()
    zh = " ".join(w for w in words if _CJK.search(w))
    other = " ".join(w for w in words if not _CJK.search(w))
    return zh, other


def _humanise(identifier: str) -> str:
    text = identifier.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Labels:
    """Words and catalogue names in one language.

    Args:
        lang: ``zh`` or ``en``.
        catalogue: The tag catalogue (``tags`` mapping of definitions, ``config`` with
            category prefixes).
    """

    lang: str
    catalogue: Any

    def __call__(self, key: str) -> str:
        """The console word ``key`` in this language."""
        zh, en = _WORDS.get(key, (key, key))
        return zh if self.lang == "zh" else en

    @property
    def other_language(self) -> str:
        """The language a toggle switches to."""
        return "en" if self.lang == "zh" else "zh"

    def tag(self, tag_id: str) -> str:
        """A tag's name: the display name in Chinese, the humanised id in English."""
        tag = self.catalogue.tags.get(tag_id)
        if tag is None:
            return tag_id
        display = str(tag.display_name)
        if self.lang == "zh" or not _CJK.search(display):
            return display
        return _humanise(tag_id)

    def category(self, category: str) -> str:
        """A category's name from its display-name prefixes."""
        prefixes: Mapping[str, list[str]] = self.catalogue.config.categories
        for prefix in prefixes.get(category, []):
            has_cjk = bool(_CJK.search(prefix))
            if has_cjk == (self.lang == "zh"):
                return prefix.rstrip("_ ")
        return _humanise(category)

    def value(self, tag_id: str, value: str) -> str:
        """A tag value's name (``true`` of a boolean tag reads yes / 是)."""
        tag = self.catalogue.tags.get(tag_id)
        if tag is None:
            return value
        if tag.value_type == "boolean":
            return self("yes") if value == "true" else value
        names = {v.id: v.name for v in tag.values} | {b.value: b.name for b in tag.bands}
        name = names.get(value) or ""
        if not name:
            return value
        zh, other = split_name(name)
        if self.lang == "zh":
            return zh or name
        return other or value

    def words(self) -> dict[str, str]:
        """Every console word in this language (for templates)."""
        index = 0 if self.lang == "zh" else 1
        return {key: pair[index] for key, pair in _WORDS.items()}
