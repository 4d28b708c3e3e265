"""The three profiles every notebook, the run pipeline and the command line know, named once."""

#: ``smoke``: CI, about a minute per notebook; ``default``: a CPU laptop, the published record;
#: ``full``: paper scale on a GPU.
PROFILES = ("smoke", "default", "full")


def check_profile(profile: str) -> str:
    """``profile`` when it is one of `PROFILES`, else a ValueError naming the valid ones."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    return profile
