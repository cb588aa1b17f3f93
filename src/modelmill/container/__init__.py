"""Containers: the build context of an image that serves a bundle (:mod:`.context`), the
serving requirements it pins (:mod:`.requirements`), the wheels it installs offline
(:mod:`.wheels`), and the builders that turn it into an image (:mod:`.builder`)."""

from modelmill.container.builder import BUILDERS, Builder, BuildError, BuiltImage, build_image, find_builder, why_not
from modelmill.container.context import DEFAULT_BASE, ContextError, dockerfile, image_name, write_context
from modelmill.container.requirements import (SERVE_BASE, TRAINING_ONLY, Requirement, RequirementsError,
                                              declared_packages, serving_requirements)
from modelmill.container.wheels import WheelError

__all__ = ["BUILDERS", "DEFAULT_BASE", "SERVE_BASE", "TRAINING_ONLY", "BuildError", "Builder", "BuiltImage",
           "ContextError", "Requirement", "RequirementsError", "WheelError", "build_image", "declared_packages",
           "dockerfile", "find_builder", "image_name", "serving_requirements", "why_not", "write_context"]
