"""The 渝快码 (Yukuai code): consented links to 渝快办 accounts, and the adapter to the platform."""

from ecard.yukuai.adapter import YukuaiPlatform, check_platform_url
from ecard.yukuai.service import YukuaiLinks

__all__ = ["YukuaiLinks", "YukuaiPlatform", "check_platform_url"]
