from fastckpt._native import build_info  # noqa
