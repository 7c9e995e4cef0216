"""Item images: from a local folder (by item id or key) or downloaded into a cache.

A missing or unreadable image is *recorded* (item id + reason), never fatal; the
extraction fills its embedding by a documented rule and saves a mask.

    >>> from cliper.images import LocalImageSource
    >>> src = LocalImageSource("images/")            # files named 123.jpg or B00002JXFI.jpg
    >>> got = src.fetch(item_id=123, key="B00002JXFI", urls=[])   # ImageBytes or a failure reason
"""

from cliper.images.download import download_url
from cliper.images.load import ImageFailure, decode_image
from cliper.images.source import ImageBytes, ImageSource, LocalImageSource, NoImageSource, UrlImageSource, make_image_source

__all__ = [
    "ImageBytes",
    "ImageFailure",
    "ImageSource",
    "LocalImageSource",
    "NoImageSource",
    "UrlImageSource",
    "decode_image",
    "download_url",
    "make_image_source",
]
