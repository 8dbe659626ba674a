"""Every label, heading and note of ``explain`` (table and page) in English and Korean.

Numbers, formulas and code are never translated; templates take them as ``{fields}``.
"""

from __future__ import annotations

LANGUAGES = ("en", "ko")

CATALOG: dict[str, dict[str, str]] = {
    # -- table headings and labels ---------------------------------------------------------------
    "layer": {"en": "layer", "ko": "레이어"},
    "type": {"en": "type", "ko": "종류"},
    "inputs": {"en": "inputs", "ko": "입력"},
    "params": {"en": "params", "ko": "파라미터"},
    "padding": {"en": "padding", "ko": "패딩"},
    "size": {"en": "size", "ko": "출력 크기"},
    "arithmetic": {"en": "arithmetic", "ko": "계산"},
    "input": {"en": "input", "ko": "입력"},
    "before": {"en": "before", "ko": "앞"},
    "after": {"en": "after", "ko": "뒤"},
    "notes": {"en": "notes", "ko": "참고"},
    "trainable": {"en": "trainable", "ko": "학습 가능"},
    "non_trainable": {"en": "non-trainable", "ko": "학습 불가"},
    "total_params": {"en": "total params", "ko": "전체 파라미터"},
    "output": {"en": "output", "ko": "출력"},
    "headline": {
        "en": "model {name}, {rank}-D: input {first} {shape_first} (PyTorch) = {last} {shape_last} (Keras), "
        "batch omitted",
        "ko": "모델 {name}, {rank}차원: 입력 {first} {shape_first} (PyTorch) = {last} {shape_last} (Keras), "
        "배치 생략",
    },
    "open_line": {
        "en": "open input size on {axes}: every size is a formula of the input's; the numbers are at {size}",
        "ko": "입력 크기가 열린 축 {axes}: 모든 크기를 입력 크기의 식으로 표시하고, 숫자는 {size}에서의 값입니다",
    },
    "open_line_assumed": {
        "en": "open input size on {axes}: every size is a formula of the input's; padding and arithmetic "
        "below are worked at {size} (give --input-size or input.reference_size for other numbers)",
        "ko": "입력 크기가 열린 축 {axes}: 모든 크기를 입력 크기의 식으로 표시합니다. 아래 패딩과 계산은 {size}에서 "
        "구한 값입니다 (다른 숫자는 --input-size 또는 input.reference_size로 지정)",
    },
    "at_size": {"en": "{first} at {size}", "ko": "{size}일 때 {first}"},
    "note_open_join": {
        "en": "'{layer}' joins '{first}' ({first_size}) and '{other}' ({other_size}) along {axis}: they agree "
        "{rule} (at {axis} = {example}: {value_first} and {value_other}); other sizes are refused",
        "ko": "'{layer}'는 '{first}'({first_size})와 '{other}'({other_size})를 {axis} 축에서 합칩니다: 두 크기는 "
        "{rule} 같습니다 ({axis} = {example}이면 {value_first}와 {value_other}); 다른 크기는 거부됩니다",
    },
    "note_open_multiple": {
        "en": "'{layer}' takes only multiples of {multiple} along {axis}, where its input is {size}: it "
        "runs {rule} (at {axis} = {example} its input is {value}); other sizes are refused",
        "ko": "'{layer}'는 {axis} 축에서 {multiple}의 배수만 받습니다 (입력 크기 {size}): {rule} 실행됩니다 "
        "({axis} = {example}이면 입력이 {value}); 다른 크기는 거부됩니다",
    },
    "join_rule_period": {
        "en": "only when {axis} is a multiple of {period}",
        "ko": "{axis}가 {period}의 배수일 때만",
    },
    "join_rule_some": {"en": "only at some sizes", "ko": "일부 크기에서만"},
    "note_open_same": {
        "en": "'{layer}': 'same' at stride {stride} pads by the size: {total_even} cells in all when {axis} is a "
        "multiple of {stride}, else {kernel} − ({axis} mod {stride}); the generated models compute it from "
        "the input at run time, and the padding shown is the one at {axis} = {n}",
        "ko": "'{layer}': 보폭 {stride}의 'same'은 크기에 따라 패딩이 달라집니다: {axis}가 {stride}의 배수이면 모두 "
        "{total_even}칸, 아니면 {kernel} − ({axis} mod {stride})칸. 생성된 모델은 실행할 때 입력에서 계산하며, 표시된 "
        "패딩은 {axis} = {n}일 때의 값입니다",
    },
    "axes_line": {
        "en": "axes: C = channels, {axes} (spatial); per-axis values are given in that order",
        "ko": "축: C = 채널, {axes} (공간 축); 축별 값은 이 순서로 표시",
    },
    "totals_line": {
        "en": "total params: {total} (trainable {trainable}, non-trainable {non_trainable})",
        "ko": "전체 파라미터: {total} (학습 가능 {trainable}, 학습 불가 {non_trainable})",
    },
    "output_line": {
        "en": "output: {first} {shape_first} · {last} {shape_last}",
        "ko": "출력: {first} {shape_first} · {last} {shape_last}",
    },
    # -- padding / size details ------------------------------------------------------------------
    "pad_none": {"en": "none", "ko": "없음"},
    "pad_split": {"en": "{before} before, {after} after", "ko": "앞 {before}, 뒤 {after}"},
    "same_total": {"en": "total {formula} → {split}", "ko": "합계 {formula} → {split}"},
    "same_total_negative": {
        "en": "total {formula} < 0 → 0, nothing padded",
        "ko": "합계 {formula} < 0 → 0, 패딩 없음",
    },
    "ceil_extra": {
        "en": "ceil_mode: the last window reaches {extra} cell(s) past the padded input (not counted)",
        "ko": "ceil_mode: 마지막 창이 패딩된 입력 너머 {extra}칸까지 닿음 (세지 않음)",
    },
    "ceil_dropped": {
        "en": "the last window would start in the right padding, so it is dropped",
        "ko": "마지막 창이 오른쪽 패딩에서 시작하게 되므로 빼냄",
    },
    "dilated": {"en": "dilated kernel {formula}", "ko": "팽창된 커널 {formula}"},
    "tr_full": {"en": "full output {formula}", "ko": "전체 출력 {formula}"},
    "tr_same_crop": {"en": "crop {formula} → {split}", "ko": "잘라냄 {formula} → {split}"},
    "tr_same_extend": {
        "en": "kernel < stride: {extra} cell(s) added at the end",
        "ko": "커널 < 스트라이드: 끝에 {extra}칸 추가",
    },
    "tr_explicit_crop": {
        "en": "padding={p} crops {p} at each side",
        "ko": "padding={p}: 양쪽에서 {p}칸씩 잘라냄",
    },
    "tr_output_padding": {
        "en": "output_padding={op} adds {op} at the end",
        "ko": "output_padding={op}: 끝에 {op}칸 추가",
    },
    "tr_valid": {"en": "valid: nothing cropped", "ko": "valid: 잘라내지 않음"},
    "tr_valid_extend": {
        "en": "valid: stride > kernel, {extra} cell(s) added at the end",
        "ko": "valid: 스트라이드 > 커널, 끝에 {extra}칸 추가",
    },
    "reduce_mean": {
        "en": "mean over {axes} {window} → {result}",
        "ko": "{axes} {window}에 대한 평균 → {result}",
    },
    "reduce_max": {
        "en": "max over {axes} {window} → {result}",
        "ko": "{axes} {window}에 대한 최댓값 → {result}",
    },
    "per_channel": {"en": "{ones} per channel", "ko": "채널마다 {ones}"},
    "features": {"en": "{count} features", "ko": "특징 {count}개"},
    "channels_sum": {"en": "{formula} channels", "ko": "{formula} 채널"},
    "no_params": {"en": "none", "ko": "없음"},
    "param_what_bias": {"en": "bias", "ko": "편향"},
    "params_bn": {
        "en": "γ, β trainable; moving mean, variance non-trainable",
        "ko": "γ, β 학습 가능; 이동 평균, 분산 학습 불가",
    },
    "params_prelu": {"en": "one slope per channel", "ko": "채널마다 기울기 하나"},
    "params_prelu_shared": {"en": "one shared slope", "ko": "공유 기울기 하나"},
    "conv_kernels": {
        "en": "{count} kernels of {kernel}×{depth}",
        "ko": "{kernel}×{depth} 커널 {count}개",
    },
    # -- notes -------------------------------------------------------------------------------------
    "note_layout": {
        "en": "layouts: PyTorch stores a batch as {torch} and Keras as {keras}{extra}; every shape here is given "
        "in both, without the batch dimension N.",
        "ko": "레이아웃: PyTorch는 배치를 {torch}, Keras는 {keras} 순서로 저장합니다{extra}. 여기의 모든 모양은 "
        "배치 차원 N을 뺀 두 레이아웃으로 표시합니다.",
    },
    "note_layout_1d": {
        "en": " (Keras calls it (batch, steps, features))",
        "ko": " (Keras 표현으로는 (batch, steps, features))",
    },
    "note_layout_3d": {
        "en": " (Keras calls it (batch, d1, d2, d3, channels))",
        "ko": " (Keras 표현으로는 (batch, d1, d2, d3, channels))",
    },
    "note_conv": {
        "en": "{layer}: {count} kernels of {kernel}×{depth}: a kernel is as deep as the input has channels "
        "({depth}) and "
        "the number of kernels is the number of output channels ({count}). A deep-learning convolution "
        "is a cross-correlation (the kernel is not flipped).",
        "ko": "{layer}: {kernel}×{depth} 커널 {count}개. 커널의 채널 수는 입력 채널 수({depth})와 같고, 커널 개수가 "
        "출력 채널 수({count})입니다. 딥러닝의 합성곱은 교차상관입니다 (커널을 뒤집지 않음).",
    },
    "note_same": {
        "en": "{layer}: 'same' with stride {stride} on {axis} = {size} needs {total} padded cell(s) in total and "
        "puts the odd one at the end ({split}; TF/ONNX SAME_UPPER). PyTorch's padding={p} pads "
        "{p} on both sides{consequence}, so the PyTorch model pads {before}/{after} explicitly.",
        "ko": "{layer}: {axis} = {size}에서 스트라이드 {stride}의 'same'은 패딩이 모두 {total}칸 필요하고 남는 한 칸을 "
        "끝에 둡니다 ({split}; TF/ONNX SAME_UPPER). PyTorch에서 padding={p}로 하면 양쪽에 {p}칸씩 들어갑니다"
        "{consequence} 그래서 PyTorch 모델은 앞 {before}칸, 뒤 {after}칸을 직접 패딩합니다.",
    },
    "same_shift": {
        "en": ": the size stays {out} but every window starts one cell earlier (the output shifts)",
        "ko": ": 크기는 {out} 그대로지만 모든 창이 한 칸 앞에서 시작합니다 (출력이 밀림).",
    },
    "same_resize": {
        "en": " and gives {formula} instead of {out}",
        "ko": ": 크기가 달라집니다: {formula} (원래 {out}).",
    },
    "note_flatten": {
        "en": "{layer}: flatten lays the {shape} feature map out as a vector: PyTorch in {torch_order} order "
        "(index {torch_index}), Keras in {keras_order} order (index {keras_index}). Cell {cell}: "
        "PyTorch {torch_value}, Keras {keras_value}. The next dense layer's rows are permuted when "
        "weights move between the frameworks.",
        "ko": "{layer}: flatten은 {shape} 특성 맵을 벡터로 펼칩니다. PyTorch는 {torch_order} 순서 (인덱스 "
        "{torch_index}), Keras는 {keras_order} 순서 (인덱스 {keras_index}). 칸 {cell}: PyTorch "
        "{torch_value}, Keras {keras_value}. 프레임워크 사이에 가중치를 옮길 때 다음 dense 층의 행 순서가 "
        "바뀝니다.",
    },
    "note_flatten_last": {
        "en": "{layer}: flatten lays the {shape} feature map out channels last (H, W, C), as Keras' Flatten "
        "does; PyTorch permutes the map to (N, H, W, C) before its flatten, so the next dense layer's rows "
        "are the same in both frameworks.",
        "ko": "{layer}: flatten은 {shape} 특성 맵을 Keras의 Flatten처럼 채널을 마지막에 두고 (H, W, C) 펼칩니다. "
        "PyTorch는 flatten 전에 맵을 (N, H, W, C)로 바꾸므로 다음 dense 층의 행 순서는 두 프레임워크에서 같습니다.",
    },
    "note_batch_norm": {
        "en": "batch_norm: moving mean and variance are counted as non-trainable (Keras' convention); PyTorch keeps "
        "them as buffers (running_mean, running_var) plus num_batches_tracked, which is not a parameter. "
        "It normalises with batch statistics in training and with the moving ones in evaluation.",
        "ko": "batch_norm: 이동 평균과 분산은 학습 불가 파라미터로 셉니다 (Keras 방식). PyTorch는 이것들을 버퍼 "
        "(running_mean, running_var)와 파라미터가 아닌 num_batches_tracked로 둡니다. 학습 중에는 배치 통계로, "
        "평가 중에는 이동 통계로 정규화합니다.",
    },
    "note_dropout": {
        "en": "dropout: active in training only; in evaluation (model.eval() / training=False) it passes values "
        "through unchanged.",
        "ko": "dropout: 학습 중에만 동작하고, 평가 중(model.eval() / training=False)에는 값을 그대로 통과시킵니다.",
    },
    "note_pool": {
        "en": "pooling has no trainable parameters: it only takes the {kinds} of each window.",
        "ko": "풀링에는 학습 가능한 파라미터가 없습니다: 각 창의 {kinds}만 취합니다.",
    },
    "kind_max": {"en": "maximum", "ko": "최댓값"},
    "kind_avg": {"en": "average", "ko": "평균"},
    "kind_or": {"en": " or ", "ko": " 또는 "},
    "note_max_pad": {
        "en": "{layer}: a max pool pads with −∞, so padded cells never win a max.",
        "ko": "{layer}: 최대 풀링은 −∞로 패딩하므로 패딩 칸이 최댓값이 되는 일은 없습니다.",
    },
    "note_avg_pad_excluded": {
        "en": "{layer}: the average divides by the real cells in each window only (padded cells are not counted).",
        "ko": "{layer}: 평균은 각 창의 실제 칸 수로만 나눕니다 (패딩 칸은 세지 않음).",
    },
    "note_avg_pad_included": {
        "en": "{layer}: the average counts padded zeros in the divisor (count_include_pad, PyTorch's default).",
        "ko": "{layer}: 평균의 분모에 패딩된 0도 셉니다 (count_include_pad, PyTorch 기본값).",
    },
    "note_transpose_same": {
        "en": "{layer}: a transposed convolution spaces the kernel's footprints {stride} apart and sums the "
        "overlaps; the full output on {axis} is {full}. Keras 'same' crops it to {n}·{stride} = {out} "
        "({split}). PyTorch reaches {out} with padding={p}, output_padding={op}{consequence}",
        "ko": "{layer}: 전치 합성곱은 커널의 자국을 {stride}칸 간격으로 놓고 겹친 부분을 더합니다. {axis}의 전체 "
        "출력은 {full}입니다. Keras 'same'은 이를 {n}·{stride} = {out} 크기로 잘라냅니다 ({split}). 같은 크기를 "
        "얻는 PyTorch 설정은 padding={p}, output_padding={op}입니다{consequence}",
    },
    "tr_same_equal": {"en": ", which crops the same cells.", "ko": ". 같은 칸을 잘라냅니다."},
    "tr_same_shift": {
        "en": ", but that crops {p} at the start and adds {op} at the end ({split}): the same size, shifted by "
        "one cell; the generated PyTorch model crops as Keras does.",
        "ko": ". 하지만 이 설정은 앞에서 {p}칸을 자르고 끝에 {op}칸을 더하므로 ({split}) 크기는 같아도 한 칸 밀립니다. "
        "생성된 PyTorch 모델은 Keras와 같은 칸을 잘라냅니다.",
    },
    "note_transpose_explicit": {
        "en": "{layer}: PyTorch's ConvTranspose padding={p} crops {p} cell(s) at each side of the full output "
        "{full} and output_padding={op} adds {op} back at the end: {formula}. Keras has no numeric padding "
        "for transposed convolutions, so the Keras model uses 'valid' and crops {before} before, "
        "{after} after.",
        "ko": "{layer}: PyTorch ConvTranspose의 padding={p}는 전체 출력 {full}의 양쪽에서 {p}칸씩 잘라내고 "
        "output_padding={op}는 끝에 {op}칸을 다시 붙입니다: {formula}. Keras의 전치 합성곱에는 숫자 패딩이 "
        "없으므로 Keras 모델은 'valid'를 쓰고 앞 {before}, 뒤 {after}칸을 잘라냅니다.",
    },
    "note_transpose_valid": {
        "en": "{layer}: 'valid' keeps the whole footprint of a transposed convolution: {formula}.",
        "ko": "{layer}: 'valid'는 전치 합성곱의 자국 전체를 유지합니다: {formula}.",
    },
    "note_global_pool": {
        "en": "{layer}: global pooling reduces each channel's {axes} map to one number, so the dense layer after "
        "it sees the same vector in both frameworks (no permutation).",
        "ko": "{layer}: 전역 풀링은 각 채널의 {axes} 맵을 숫자 하나로 줄이므로, 뒤의 dense 층은 두 프레임워크에서 "
        "같은 벡터를 받습니다 (순서 바뀜 없음).",
    },
    "note_downsample": {
        "en": "parameters: the dense layers hold {dense_share}% of the {total} parameters; their count grows with "
        "the flattened size, which down-sampling (pooling, strides) keeps small.",
        "ko": "파라미터: 전체 {total}개 중 {dense_share}%가 dense 층에 있습니다. 이 개수는 펼친 크기에 비례하므로 "
        "다운샘플링(풀링, 스트라이드)이 작게 유지해 줍니다.",
    },
    # -- page ------------------------------------------------------------------------------------
    "page_title": {"en": "cnnspec explain: {name}", "ko": "cnnspec 설명: {name}"},
    "contents": {"en": "Layers", "ko": "레이어 목록"},
    "keys_hint": {
        "en": "Keys: j / ↓ next layer, k / ↑ previous layer, Home / End first / last, Tab moves "
        "through the layers.",
        "ko": "키: j / ↓ 다음 레이어, k / ↑ 이전 레이어, Home / End 처음 / 마지막, Tab으로 레이어 사이를 "
        "이동합니다.",
    },
    "shape": {"en": "shape", "ko": "모양"},
    "torch_layout": {"en": "PyTorch ({layout})", "ko": "PyTorch ({layout})"},
    "keras_layout": {"en": "Keras ({layout})", "ko": "Keras ({layout})"},
    "input_shape": {"en": "input", "ko": "입력"},
    "output_shape": {"en": "output", "ko": "출력"},
    "padding_picture": {"en": "padding and windows", "ko": "패딩과 창"},
    "legend_input": {"en": "input cell", "ko": "입력 칸"},
    "legend_pad": {"en": "padded cell", "ko": "패딩 칸"},
    "legend_first": {"en": "first window", "ko": "첫 창"},
    "legend_last": {"en": "last window", "ko": "마지막 창"},
    "legend_crop": {"en": "cropped cell", "ko": "잘라낸 칸"},
    "legend_beyond": {
        "en": "past the input (ceil_mode, never counted)",
        "ko": "입력 너머 (ceil_mode, 세지 않음)",
    },
    "alt_padding": {
        "en": "PyTorch padding={p} on both sides, for comparison (not the same windows)",
        "ko": "비교용: PyTorch padding={p} (양쪽) — 창의 위치가 다름",
    },
    "formula_heading": {"en": "output size", "ko": "출력 크기"},
    "params_heading": {"en": "parameters", "ko": "파라미터"},
    "code_heading": {"en": "code", "ko": "코드"},
    "no_code": {"en": "(no line of its own)", "ko": "(별도 줄 없음)"},
    "code_unavailable": {
        "en": "(source not available: {reason})",
        "ko": "(소스를 만들 수 없음: {reason})",
    },
    "flatten_heading": {"en": "flatten order", "ko": "flatten 순서"},
    "flatten_first_cells": {
        "en": "the first {count} positions of the vector, coloured by channel",
        "ko": "벡터의 처음 {count}자리, 채널별 색",
    },
    "worked_cell": {"en": "worked cell {cell}", "ko": "예시 칸 {cell}"},
    "kernel_rows_heading": {"en": "weight order", "ko": "가중치 순서"},
    "kernel_rows": {
        "en": "This layer reads a flattened feature map, so the weight of each input cell sits at that cell's "
        "flatten index, which differs between the frameworks (PyTorch weight is out × in, Keras kernel "
        "is in × out):",
        "ko": "이 층은 펼친 특성 맵을 입력으로 받으므로 각 입력 칸의 가중치는 그 칸의 flatten 인덱스에 있고, 그 "
        "인덱스는 프레임워크마다 다릅니다 (PyTorch weight는 out × in, Keras kernel은 in × out):",
    },
    "graph_heading": {"en": "model graph", "ko": "모델 그래프"},
    "totals_heading": {"en": "totals", "ko": "합계"},
    "notes_heading": {"en": "notes", "ko": "참고"},
    "skip_to_layers": {"en": "Skip to the layers", "ko": "레이어로 건너뛰기"},
    "cell_strip": {"en": "{axis} axis: {n} cells", "ko": "{axis} 축: {n}칸"},
    "grid_caption": {
        "en": "{rows}×{cols} input ({axes}) with its padding",
        "ko": "패딩을 포함한 {rows}×{cols} 입력 ({axes})",
    },
    "elided": {"en": "cells in the middle are elided (…)", "ko": "가운데 칸은 생략 (…)"},
    "tr_picture": {
        "en": "full output of the transposed convolution and what is cropped",
        "ko": "전치 합성곱의 전체 출력과 잘라내는 칸",
    },
}


def text(key: str, lang: str = "en", **fields) -> str:
    """The catalog string ``key`` in ``lang``, with ``fields`` filled in."""
    template = CATALOG[key].get(lang) or CATALOG[key]["en"]
    return template.format(**fields) if fields else template


def check_language(lang: str) -> str:
    """``lang`` if it is supported, else a ValueError naming the supported ones."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language '{lang}': expected one of {', '.join(LANGUAGES)}")
    return lang
