import goldloop


def test_all_is_honest():
    public = {name for name in dir(goldloop) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(goldloop, name)).__name__ == "module"}
    assert set(goldloop.__all__) == public - modules
    for name in goldloop.__all__:
        assert getattr(goldloop, name) is not None
