"""The [llm] sampling controls (repeat_penalty, DRY, min_p ...): defaults and validation, which
ones a request carries and the body sends, provenance, request keys, and a clear error when an
endpoint refuses one."""

import dataclasses

import pytest
from aiohttp import web

from goldloop.config import Config, LLMConfig
from goldloop.errors import ConfigError
from goldloop.generate import generate
from goldloop.generate._runner import build_request
from goldloop.llm import (CONTROL_NAMES, NEUTRAL_CONTROLS, CompletionRequest, EmbeddedLLM, FakeLLM,
                          OpenAICompatibleLLM, sampling_controls)
from goldloop.llm.fake_server import FakeOpenAIServer

from .http_support import ThreadedApp

ALL_NEUTRAL = {**NEUTRAL_CONTROLS, "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": 256}
DEFAULT_DRY = {"dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2, "dry_penalty_last_n": 256}
DEFAULT_CONTROLS = {"repeat_penalty": 1.1, **DEFAULT_DRY}


def neutral_llm() -> LLMConfig:
    return LLMConfig(**{name: ALL_NEUTRAL[name] for name in CONTROL_NAMES})


# -- configuration -----------------------------------------------------------------------------

def test_defaults_send_the_repeat_penalty_and_dry():
    """repeat_penalty 1.1 and DRY 0.8 are on by default: together they keep the embedded model's
    drafts out of repetition loops (bench/generation_quality.py)."""
    cfg = LLMConfig()
    assert (cfg.repeat_penalty, cfg.presence_penalty, cfg.frequency_penalty) == (1.1, 0.0, 0.0)
    assert (cfg.dry_multiplier, cfg.dry_base, cfg.dry_allowed_length, cfg.dry_penalty_last_n) == (0.8, 1.75, 2, 256)
    assert (cfg.min_p, cfg.top_k, cfg.typical_p) == (0.0, 0, 1.0)
    assert sampling_controls(cfg) == DEFAULT_CONTROLS
    assert list(sampling_controls(cfg)) == ["repeat_penalty", *DEFAULT_DRY], "in CONTROL_NAMES order"
    assert sampling_controls(neutral_llm()) == {}


def test_dry_off_leaves_only_the_repeat_penalty():
    assert sampling_controls(LLMConfig(dry_multiplier=0.0)) == {"repeat_penalty": 1.1}
    assert sampling_controls(Config.from_dict({"llm": {"dry_multiplier": 0}}).llm) == {"repeat_penalty": 1.1}
    assert sampling_controls(LLMConfig(dry_multiplier=0.0, repeat_penalty=1.0)) == {}


def test_every_control_is_a_documented_llm_key():
    fields = {f.name: f for f in dataclasses.fields(LLMConfig)}
    assert set(CONTROL_NAMES) <= set(fields) and len(set(CONTROL_NAMES)) == 10
    for name in CONTROL_NAMES:
        help_text = fields[name].metadata["help"]
        assert "sent only" in help_text.lower() or "Sent only" in help_text, name
        if name in NEUTRAL_CONTROLS:
            assert "neutral" in help_text, name


def test_each_control_alone_is_sent_once_it_leaves_its_neutral_value():
    for name, value in {"repeat_penalty": 1.3, "presence_penalty": 0.5, "frequency_penalty": -0.5,
                        "min_p": 0.1, "top_k": 40, "typical_p": 0.9}.items():
        assert sampling_controls(dataclasses.replace(neutral_llm(), **{name: value})) == {name: value}


def test_dry_shape_settings_travel_only_with_dry_on():
    off = dataclasses.replace(neutral_llm(), dry_base=3.0, dry_allowed_length=5, dry_penalty_last_n=64)
    assert sampling_controls(off) == {}
    on = dataclasses.replace(off, dry_multiplier=0.8)
    assert sampling_controls(on) == {"dry_multiplier": 0.8, "dry_base": 3.0, "dry_allowed_length": 5,
                                     "dry_penalty_last_n": 64}


@pytest.mark.parametrize("key, value, says", [
    ("dry_penalty_last_n", -1, "must be at least 0, got -1"),
    ("repeat_penalty", 0, "must be at least 0.1"),
    ("presence_penalty", 2.5, "must be at most 2.0"),
    ("min_p", 1.5, "must be at most 1.0"),
    ("top_k", 2.5, "must be a whole number"),
    ("typical_p", "high", "must be a number"),
])
def test_out_of_range_values_are_refused_naming_the_key(key, value, says):
    with pytest.raises(ConfigError, match=rf"\[llm\] {key} {says}"):
        Config.from_dict({"llm": {key: value}})


def test_a_misspelt_control_gets_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'repeat_penalty'"):
        Config.from_dict({"llm": {"repeat_penalt": 1.2}})


# -- requests, keys and provenance -------------------------------------------------------------

def test_build_request_carries_the_controls_and_keys_on_them(project):
    _, cfg, store = project
    seeds = store.records(origin="gold", split="train")[:3]

    def planned(**llm):
        cfg.llm = dataclasses.replace(LLMConfig(backend="fake"), **llm)
        return build_request(cfg, FakeLLM(), "paraphrase.v1", seeds[0].label, seeds, 1, 0).request

    default = planned()
    assert default.controls == tuple(DEFAULT_CONTROLS.items())
    assert {k: default.sampling()[k] for k in DEFAULT_CONTROLS} == DEFAULT_CONTROLS
    assert "min_p" not in default.sampling()
    assert planned().key == default.key, "the same controls make the same request"
    # with DRY off, only repeat_penalty is sent
    no_dry = planned(dry_multiplier=0.0)
    assert no_dry.controls == (("repeat_penalty", 1.1),) and no_dry.key != default.key
    with_min_p = planned(dry_multiplier=0.0, min_p=0.1)
    assert with_min_p.controls == (("repeat_penalty", 1.1), ("min_p", 0.1))
    assert with_min_p.prompt == default.prompt
    assert len({no_dry.key, with_min_p.key, planned(dry_multiplier=0.0, repeat_penalty=1.2).key,
                planned(dry_multiplier=0.0, repeat_penalty=1.0).key}) == 4
    # a setting that is not sent does not make a new request; one that is sent does
    assert planned(dry_multiplier=0.0, dry_base=3.0).key == no_dry.key
    assert planned(dry_base=3.0).key != default.key
    assert planned(dry_multiplier=1.2).key != default.key


def test_controls_reach_the_backend_and_every_drafts_provenance(project):
    _, cfg, store = project
    cfg.llm.min_p = 0.05
    llm = FakeLLM()
    report = generate(store, cfg, llm, round=1, show_progress=False)
    assert report.succeeded == len(llm.requests) == 12
    expected = {**DEFAULT_CONTROLS, "min_p": 0.05}
    assert all(dict(r.controls) == expected for r in llm.requests)
    synthetic = store.records(origin="synthetic")
    assert len(synthetic) == 12
    for rec in synthetic:
        params = rec.provenance.params
        assert {k: params[k] for k in expected} == expected
        assert not {"presence_penalty", "frequency_penalty", "top_k", "typical_p"} & set(params)
        assert params["temperature"] == cfg.generate.temperature


# -- what the OpenAI-compatible client sends ---------------------------------------------------

@pytest.mark.parametrize("http_client", ["native", "aiohttp"])
@pytest.mark.parametrize("dry_multiplier, dry_sent", [(0.8, DEFAULT_DRY), (0.0, {})], ids=["dry-default", "dry-off"])
def test_the_body_holds_the_non_neutral_controls_and_nothing_else(project, http_client, dry_multiplier, dry_sent):
    _, cfg, store = project
    cfg.llm.top_k, cfg.llm.typical_p, cfg.llm.dry_multiplier = 40, 0.95, dry_multiplier
    with FakeOpenAIServer() as server:
        llm = OpenAICompatibleLLM(server.url, "m", concurrency=4, http_client=http_client)
        report = generate(store, cfg, llm, round=1, show_progress=False)
        llm.close()
        bodies = list(server.bodies.values())
    assert report.succeeded == len(bodies) == 12
    for body in bodies:
        sent = {k: body[k] for k in CONTROL_NAMES if k in body}
        assert sent == {"repeat_penalty": 1.1, **dry_sent, "top_k": 40, "typical_p": 0.95}
        assert body["temperature"] == 0.9 and body["prompt"]


def test_a_request_without_controls_sends_none():
    with FakeOpenAIServer() as server:
        llm = OpenAICompatibleLLM(server.url, "m", concurrency=2)
        reqs = [CompletionRequest(key="plain", prompt="a b c"),
                CompletionRequest(key="chat", messages=({"role": "user", "content": "hi"},),
                                  controls=(("presence_penalty", 0.4),))]
        assert all(r.ok for r in llm.complete(reqs))
        llm.close()
        assert not set(CONTROL_NAMES) & set(server.bodies["plain"])
        assert server.bodies["chat"]["presence_penalty"] == 0.4 and "messages" in server.bodies["chat"]


# -- an endpoint that refuses a control --------------------------------------------------------

def test_a_refused_control_fails_at_once_naming_the_field_and_the_fix(project):
    _, cfg, store = project
    with FakeOpenAIServer(refuse_fields=("repeat_penalty",)) as server:
        llm = OpenAICompatibleLLM(server.url, "m", concurrency=4, max_retries=3, backoff_s=0.001)
        report = generate(store, cfg, llm, round=1, show_progress=False)
        llm.close()
        attempts = dict(server.attempts)
        outcomes = {entry.outcome for entry in server.log}
    assert report.failed == 12 and report.succeeded == 0
    assert report.errors == {"endpoint refused [llm] repeat_penalty": 12}
    assert set(attempts.values()) == {1} and outcomes == {"refused"}, "a refusal is not retried"
    row = store.generations(round=1)[0]
    assert row.status == "failed" and row.attempts == 1
    assert "'repeat_penalty'" in row.error and "[llm] repeat_penalty = 1.1" in row.error
    assert "set [llm] repeat_penalty = 1.0 (its neutral value) in goldloop.toml" in row.error
    assert "Unrecognized request argument supplied: repeat_penalty" in row.error
    # with the control neutral, the same endpoint takes every request
    cfg.llm.repeat_penalty = 1.0
    with FakeOpenAIServer(refuse_fields=("repeat_penalty",)) as server:
        llm = OpenAICompatibleLLM(server.url, "m", concurrency=4)
        assert generate(store, cfg, llm, round=1, show_progress=False).succeeded == 12
        llm.close()


OPENAI_REFUSES = ("repeat_penalty", "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n")


def test_an_endpoint_refusing_every_control_needs_repeat_penalty_and_dry_neutral(project):
    """OpenAI's own API takes neither repeat_penalty nor the DRY fields: with the defaults each
    refusal names the next key to set, and with both neutral every request goes through."""
    _, cfg, store = project

    seen: set[str] = set()

    def refusal(cause: str) -> str:
        """Run against the refusing endpoint; every request fails for ``cause``; its new error."""
        with FakeOpenAIServer(refuse_fields=OPENAI_REFUSES) as server:
            llm = OpenAICompatibleLLM(server.url, "m", concurrency=4, max_retries=3, backoff_s=0.001)
            report = generate(store, cfg, llm, round=1, show_progress=False)
            llm.close()
        assert report.errors == {cause: 12} and report.succeeded == 0
        new = {row.error for row in store.generations(round=1)} - seen
        seen.update(new)
        return " | ".join(sorted(new))

    error = refusal("endpoint refused [llm] repeat_penalty")
    assert "set [llm] repeat_penalty = 1.0 (its neutral value)" in error, error
    cfg.llm.repeat_penalty = 1.0
    error = refusal("endpoint refused [llm] dry_multiplier")
    assert "[llm] dry_multiplier = 0.8" in error, error
    assert "set [llm] dry_multiplier = 0.0 (its neutral value) in goldloop.toml" in error, error
    cfg.llm.repeat_penalty, cfg.llm.dry_multiplier = 1.1, 0.0
    refusal("endpoint refused [llm] repeat_penalty")
    cfg.llm.repeat_penalty = 1.0
    with FakeOpenAIServer(refuse_fields=OPENAI_REFUSES) as server:
        llm = OpenAICompatibleLLM(server.url, "m", concurrency=4)
        assert generate(store, cfg, llm, round=1, show_progress=False).succeeded == 12
        llm.close()
        assert not set(CONTROL_NAMES) & {k for body in server.bodies.values() for k in body}


class RefusingApp(ThreadedApp):
    """An endpoint that answers every request with one fixed status and body."""

    def __init__(self, status, body):
        app = web.Application()
        app.router.add_post("/v1/completions", self._handle)
        super().__init__(app)
        self.status, self.body, self.calls = status, body, 0

    async def _handle(self, request):
        self.calls += 1
        return web.json_response(self.body, status=self.status)


@pytest.mark.parametrize("status, message, cause, fix", [
    (400, "[json.exception.out_of_range] dry_penalty_last_n: Value must be between 0 and 2147483647",
     "endpoint refused [llm] dry_penalty_last_n", "set [llm] dry_multiplier = 0 in goldloop.toml"),
    (422, "Extra inputs are not permitted: body.min_p", "endpoint refused [llm] min_p",
     "set [llm] min_p = 0.0 (its neutral value)"),
    (400, "prompt is too long for this model", "HTTP 400",
     "the request also carried sampling controls from [llm] (min_p = 0.1, dry_multiplier = 0.8"),
])
def test_refusals_name_the_field_when_the_reply_does(status, message, cause, fix):
    controls = (("min_p", 0.1), ("dry_multiplier", 0.8), ("dry_base", 1.75), ("dry_allowed_length", 2),
                ("dry_penalty_last_n", -1))
    with RefusingApp(status, {"error": {"code": status, "message": message}}) as server:
        llm = OpenAICompatibleLLM(server.url, "m", max_retries=3, backoff_s=0.001)
        [result] = llm.complete([CompletionRequest(key="k", prompt="p", controls=controls)])
        llm.close()
    assert result.text is None and result.attempts == 1 and server.calls == 1
    assert result.error.startswith(cause + ": ") and fix in result.error, result.error
    assert llm.account.failure_causes == {cause: 1}


@pytest.mark.slow
def test_the_embedded_model_takes_every_control():
    """llama.cpp's server reads each control by these names and accepts these values."""
    controls = (("repeat_penalty", 1.1), ("presence_penalty", 0.1), ("frequency_penalty", 0.1),
                ("dry_multiplier", 0.8), ("dry_base", 1.75), ("dry_allowed_length", 2),
                ("dry_penalty_last_n", 256), ("min_p", 0.05), ("top_k", 40), ("typical_p", 0.95))
    prompt = "A list of fruits.\nFruit 1: apple\nFruit 2: banana\nFruit 3:"
    llm = EmbeddedLLM(concurrency=2, context_per_sequence=512)
    try:
        results = list(llm.complete([CompletionRequest(key=f"k{i}", prompt=prompt, max_tokens=12, seed=i,
                                                       stop=("\n",), controls=controls) for i in range(2)]))
    finally:
        llm.close()
    assert all(r.ok and r.text.strip() for r in results), [r.error for r in results]
