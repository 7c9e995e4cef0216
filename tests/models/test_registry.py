"""The registry: built-ins load lazily by name; bad plugin entry points are one clear error."""

import pytest

from cliper.errors import ConfigError
from cliper.models import registry
from cliper.models.bpr import BPR


def test_every_builtin_loads_under_its_own_name():
    for name in registry.BUILTIN:
        assert registry.get_model_class(name).name == name


@pytest.mark.parametrize("target, message", [
    ("no_such_module_xyz:Model", "cannot be loaded"),
    ("cliper.models.bpr:Nope", "cannot be loaded"),
    ("cliper.models.bpr:BPRParams", "not a cliper Recommender subclass"),
    ("cliper.models.bpr:BPR", "declares name 'bpr'"),
])
def test_a_bad_plugin_entry_point_is_one_clear_error(monkeypatch, target, message):
    monkeypatch.setattr(registry, "_plugins", lambda: {"broken": target})
    with pytest.raises(ConfigError, match=message) as err:
        registry.get_model_class("broken")
    assert "broken" in str(err.value) and "\n" not in str(err.value)
    assert "broken" in registry.available_models()


def test_register_refuses_a_second_class_under_a_taken_name():
    class Impostor(BPR):
        name = "bpr"

    registry.get_model_class("bpr")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(Impostor)
