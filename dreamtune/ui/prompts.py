"""Prompt lists the Generate page offers."""

# DreamBench's prompt lists (Ruiz et al., DreamBooth, CVPR 2023; dataset CC BY 4.0), as templates
_SHARED = (
    "in the jungle",
    "in the snow",
    "on the beach",
    "on a cobblestone street",
    "on top of pink fabric",
    "on top of a wooden floor",
    "with a city in the background",
    "with a mountain in the background",
    "with a blue house in the background",
    "on top of a purple rug in a forest",
)
_OBJECT = (
    "with a wheat field in the background",
    "with a tree and autumn leaves in the background",
    "with the Eiffel Tower in the background",
    "floating on top of water",
    "floating in an ocean of milk",
    "on top of green grass with sunflowers around it",
    "on top of a mirror",
    "on top of the sidewalk in a crowded street",
    "on top of a dirt road",
    "on top of a white rug",
)
_LIVE = (
    "wearing a red hat",
    "wearing a santa hat",
    "wearing a rainbow scarf",
    "wearing a black top hat and a monocle",
    "in a chef outfit",
    "in a firefighter outfit",
    "in a police outfit",
    "wearing pink glasses",
    "wearing a yellow shirt",
    "in a purple wizard outfit",
)
_STYLE = (
    "a red {subject} {class}",
    "a purple {subject} {class}",
    "a shiny {subject} {class}",
    "a wet {subject} {class}",
    "a cube shaped {subject} {class}",
)
DREAMBENCH_PROMPTS = {
    "objects": [f"a {{subject}} {{class}} {c}" for c in _SHARED + _OBJECT] + list(_STYLE),
    "live subjects": [f"a {{subject}} {{class}} {c}" for c in _SHARED + _LIVE] + list(_STYLE),
}
