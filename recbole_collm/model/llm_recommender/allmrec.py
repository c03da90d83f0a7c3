"""A-LLMRec: a frozen SASRec and a frozen LLM joined by learned alignment (Kim et al., KDD 2024)."""
from __future__ import annotations

import difflib

import numpy as np
import torch

from recbole_collm.data.dataloader import CANDIDATES_FIELD, eval_mode
from recbole_collm.data.sampling import unseen_items, user_item_sets
from recbole_collm.errors import InputError
from recbole_collm.model.abstract_recommender import LLMRecommender
from recbole_collm.model.cf_source import NOT_HANDED, CheckpointSource
from recbole_collm.model.llm.alignment import ItemTextAligner, SoftTokenProjector, Standardize
from recbole_collm.model.llm.backbone import load_llm
from recbole_collm.model.llm.batching import group_rows
from recbole_collm.model.llm.prompts import leading_special_ids, pad_id, text_ids
from recbole_collm.model.llm.shared_prefix import SharedPrefixEncoder
from recbole_collm.model.llm.soft_prompts import SLOT, embed_soft_prompts
from recbole_collm.model.llm.title_embeddings import resolve_text_encoder, title_embeddings


def title_scores(token_ll: list[torch.Tensor], context_free: torch.Tensor, rank_by: str) -> torch.Tensor:
    """One score per candidate from its title tokens' log-likelihoods after the prompt
    (``token_ll[r]``) and the title's summed log-likelihood without the prompt
    (``context_free[r]``).

    The candidates' titles stand in the prompt, so after its opening tokens a title is copied
    cheaply. ``sum`` (the default) charges every token: the least tied to title length of the three
    on ml-100k validation queries (within-query score–length correlation −0.15, HR@1 best:
    docs/models.md, A-LLMRec). ``mean`` divides the opening uncertainty by the length, so
    long titles score high (+0.68). ``relative`` subtracts the title's context-free sum, which
    grows with length while the copied in-prompt sum does not, so it favours long titles most
    (+0.84) — it cancels length only where the title is not in the prompt."""
    summed = torch.stack([t.sum() for t in token_ll])
    if rank_by == "mean":
        return torch.stack([t.mean() for t in token_ll])
    if rank_by == "sum":
        return summed
    return summed - context_free.to(summed)


def mean_pairwise_cosine(vectors: torch.Tensor) -> torch.Tensor:
    """The mean cosine over the ordered pairs of distinct rows of ``vectors`` (≥ 2 rows): ~1 when
    they all point one way, as a collapsed latent's candidates do."""
    unit = torch.nn.functional.normalize(vectors.float(), dim=-1)
    similarity = unit @ unit.T
    return (similarity.sum() - similarity.diagonal().sum()) / (len(unit) * (len(unit) - 1))


class ALLMRec(LLMRecommender):
    """A-LLMRec on the plugin's rows (each positive row is a next-item query with its history).

    - The CF model is a SASRecCTR or RecBole SASRec checkpoint (``cf_checkpoint``; ``auto`` trains one, as for
      CoLLM), frozen and in eval mode; the LLM is frozen.
    - ``align`` (stage 1): :class:`ItemTextAligner` maps SASRec's item embeddings and the titles'
      text vectors (:func:`title_embeddings`: a local sentence encoder, else the LLM's mean-pooled
      title states) into one latent space: matching, reconstruction and recommendation losses on
      each positive row's item and a random negative.
    - ``project`` (stage 2): :class:`SoftTokenProjector` maps SASRec's user representation and the
      joint item latents into the LLM's token space; the prompt lists the user's last
      ``prompt_history_length`` titles, each followed by its item soft token, then a candidate
      set (the target and ``candidate_num`` − 1 random unseen items, shuffled) likewise; the loss
      is the target title's likelihood (teacher forcing). Only the projectors train.
    - Ranking (``eval_args.mode: uniN``/``popN``; the paper: uni19, Hit@1): every candidate row of
      a query scores its title's log-likelihood after the query's prompt (``rank_by``: summed,
      relative to the title's context-free likelihood, or mean — :func:`title_scores`) (the prompt lists
      the query's candidate set in the loader's seeded random order: the target's place tells
      nothing, tested); the
      shared-prefix engine runs the prompt once per query and the candidates' titles against it.
      ``rank_by: generate`` is the paper's own protocol: greedy generation, then each candidate
      scored by the similarity of its title to the generated text (exact match ranks first).
    """

    reads_cf_checkpoint = True  # built with its restored cf_checkpoint (recbole_collm.restore.build_model)
    cf_models = ("SASRecCTR", "SASRec")  # it aligns a SASRec's items and reads its user representation
    tunable_modules = ("aligner", "projector")
    stage_sequence = ("align", "project")

    def __init__(self, config, dataset, source: CheckpointSource | None = None):
        """``source``: the restored, aligned SASRec of ``cf_checkpoint`` (the runner's
        :func:`recbole_collm.restore.build_model` hands it over)."""
        super().__init__(config, dataset)
        for phase in ("valid", "test"):
            mode = eval_mode(config, phase)
            if not mode.startswith(("uni", "pop")):
                raise InputError(
                    f"eval_args.mode: ALLMRec ranks each query's candidate set (its prompt lists them), so {phase} "
                    f"must be uniN or popN (the paper: uni19), not '{mode}'"
                )
        self.candidate_num = int(config["candidate_num"])
        self.history_length = int(config["prompt_history_length"])
        self.rank_by = config["rank_by"]
        # the user's train items: no training negative or listed candidate is one of them (the
        # official ``random_neq`` over the user's items)
        self.user_items = user_item_sets(dataset.inter_feat[self.USER_ID].numpy(), dataset.inter_feat[self.ITEM_ID].numpy(), dataset.user_num)
        self.max_new_tokens = int(config["max_new_tokens"])
        self.prefix_batch_size = int(config["prefix_batch_size"])
        self.llm_batch_size = int(config["llm_batch_size"])
        titles = self._item_titles(dataset, "A-LLMRec's prompts and alignment need them")
        # a missing SASRec is reported before the LLM loads (build_model restored and checked it)
        if source is None:
            raise InputError(NOT_HANDED.format(model="ALLMRec") if config["cf_checkpoint"] else
                             "cf_checkpoint: A-LLMRec needs a trained SASRec checkpoint (a saved SASRec-....pth, or auto)")
        self.source = source
        self.llm, tokenizer = load_llm(config, self.precision.weights_dtype, self.precision.linear_dtype)
        with self.precision.autocast():  # the LLM's linear layers may hold the compute dtype
            text = title_embeddings(titles, self.llm, tokenizer, str(config["llm_path"] or "default"),
                                    resolve_text_encoder(config["text_encoder_path"]), compute_dtype=self.precision.dtype)
        self.register_buffer("text_vectors", text, persistent=False)  # frozen: recomputed (cached), never saved
        latent, hidden = int(config["latent_size"]), self.llm.config.hidden_size
        if config["align_inputs"] == "standardized":  # over the catalogue (row 0 is padding)
            catalogue = torch.arange(1, self.n_items)
            with torch.no_grad():
                scales = Standardize(self.source.item_vectors(catalogue)), Standardize(text[1:])
        else:
            scales = None, None
        self.aligner = ItemTextAligner(self.source.dim, text.shape[1], latent, *scales)
        # soft tokens at the norm of the LLM's own token embeddings (SmolLM2: ~3.2; the projector's
        # first outputs: 15-17), so the frozen LLM reads them on the scale it was trained on
        embedding_norm = float(self.llm.get_input_embeddings().weight.float().norm(dim=-1).mean())
        self.projector = SoftTokenProjector(self.source.dim, latent, hidden, embedding_norm)
        self._context_free = torch.full((self.n_items,), float("nan"))  # per title, computed when first needed

        encode, domain = text_ids(tokenizer), self.item_word
        self.tokenizer = tokenizer
        self.pad_id = pad_id(tokenizer)
        self.bos = leading_special_ids(tokenizer)
        self.intro = encode(" is a user representation. This user has interacted with")
        self.between = encode(f" in the previous. Recommend one next {domain} for this user from the following {domain} title set,")
        self.cue = encode(". The recommendation is")
        self.comma = encode(",")
        self.quoted = [encode(f' "{t}"') for t in titles]
        self.titles = [str(t) for t in titles]
        # False: rank with no soft token in the prompt (the frozen LLM on the titles alone: the
        # reference the soft tokens must improve on); an evaluation switch, never trained
        self.soft_tokens = True
        self.set_stage(self.stages[0])

    def _trainable_in(self, stage: str) -> list:
        """``align`` trains the aligner, ``project`` the projectors; the rest is frozen."""
        return [self.aligner if stage == "align" else self.projector]

    # --- pieces ---------------------------------------------------------------------------------
    def item_tokens(self, items: torch.Tensor) -> torch.Tensor:
        """Item soft tokens: SASRec embedding → joint latent (frozen aligner) → projector."""
        return self.projector.items(self.item_latents(items))

    def item_latents(self, items: torch.Tensor) -> torch.Tensor:
        """The joint latent of ``items`` from their SASRec embeddings (stage 1's item encoder)."""
        return self.aligner.item(self.source.item_vectors(items))[0]

    def text_latents(self, items: torch.Tensor) -> torch.Tensor:
        """The joint latent of ``items`` from their titles' text vectors (stage 1's text encoder)."""
        return self.aligner.text(self.text_vectors[items])[0]

    def prompt(self, history: list[int], candidates: list[int], slots: bool = True) -> list[int]:
        """Token ids with a ``SLOT`` for the user token and after each title (none when not
        ``slots``: the same text with no soft token); without the cue's last token, which every
        candidate's suffix starts with (so its first title token is scored)."""
        slot = [SLOT] if slots else []
        ids = self.bos + slot + self.intro
        for k, item in enumerate(history):
            ids += (self.comma if k else []) + self.quoted[item] + slot
        ids += self.between
        for k, item in enumerate(candidates):
            ids += (self.comma if k else []) + self.quoted[item] + slot
        return ids + self.cue[:-1]

    def prompt_vectors(self, interaction, rows: list[int], histories: list[list[int]], candidates: list[list[int]],
                        token_items: list[list[int]] | None = None) -> list[torch.Tensor]:
        """The user token, then one item token per listed title (``token_items``: the items whose
        tokens follow the candidates' titles, when not the candidates themselves)."""
        users = self.projector.users(self.source(interaction[rows])[0])
        device = users.device
        token_items = candidates if token_items is None else token_items
        return [torch.cat([users[k : k + 1], self.item_tokens(torch.tensor(h + c, dtype=torch.long, device=device))])
                for k, (h, c) in enumerate(zip(histories, token_items))]

    def _title_token_ll(self, interaction, rows: list[int], histories, candidates, group: np.ndarray, targets: list[int],
                        token_items: list[list[int]] | None = None, slots: bool = True) -> list[torch.Tensor]:
        """Each target title's token log-likelihoods after its query's prompt (``group``: row → query)."""
        engine = SharedPrefixEncoder(self.llm.get_decoder(), self.llm.get_input_embeddings(), self.pad_id,
                                     self.prefix_batch_size, self.llm_batch_size)
        seqs = [self.prompt(h, c, slots) for h, c in zip(histories, candidates)]
        vectors = self.prompt_vectors(interaction, rows, histories, candidates, token_items) if slots else []
        embeds, mask, _ = embed_soft_prompts(self.llm.get_input_embeddings(), seqs, vectors, self.pad_id, left=False)
        suffixes = [self.cue[-1:] + self.quoted[t] for t in targets]
        with self.precision.autocast():
            kv = engine.encode_embeds(embeds, mask)
            states = engine.suffix_states(kv, mask, group, suffixes)
        return self._suffix_token_ll(states, suffixes)

    def _suffix_token_ll(self, states: list[torch.Tensor], suffixes: list[list[int]]) -> list[torch.Tensor]:
        """Log-likelihood of each suffix's tokens after its first, from the states before them."""
        lengths = [len(s) - 1 for s in suffixes]
        logits = self.vocabulary_logits(torch.cat([s[:-1] for s in states]))
        tokens = torch.tensor([tok for s in suffixes for tok in s[1:]], device=logits.device)
        token_ll = torch.log_softmax(logits, -1).gather(1, tokens.view(-1, 1)).view(-1)
        return list(torch.split(token_ll, lengths))

    @torch.no_grad()
    def context_free(self, items: list[int]) -> torch.Tensor:
        """Each item's title log-likelihood (summed) after the cue alone — no user, history or
        candidates. The LLM is frozen, so it is computed once per item and kept."""
        missing = sorted({i for i in items if torch.isnan(self._context_free[i])})
        prefix = self.bos + self.cue
        for start in range(0, len(missing), self.llm_batch_size):
            part = missing[start : start + self.llm_batch_size]
            seqs = [prefix + self.quoted[i] for i in part]
            embeds, mask, positions = embed_soft_prompts(self.llm.get_input_embeddings(), seqs, [], self.pad_id, left=False)
            with self.precision.autocast():
                hidden = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state
            suffixes = [self.cue[-1:] + self.quoted[i] for i in part]
            states = [hidden[b, len(prefix) - 1 : len(seqs[b])] for b in range(len(part))]
            for i, ll in zip(part, self._suffix_token_ll(states, suffixes)):
                self._context_free[i] = ll.sum().cpu()
        return self._context_free[items]

    # --- training -------------------------------------------------------------------------------
    def negatives(self, users: torch.Tensor, items: torch.Tensor, num: int) -> list[list[int]]:
        """``num`` distinct random items per row, none the target or one of the user's train items
        (torch's generator: a resumed run draws the same)."""
        draw = lambda k: torch.randint(1, self.n_items, (k,)).tolist()  # noqa: E731
        return [unseen_items(draw, self.user_items[user] | {item}, num, self.n_items, f"ALLMRec negatives: user {user}")
                for user, item in zip(users.tolist(), items.tolist())]

    def calculate_loss(self, interaction) -> torch.Tensor:
        positive = (interaction[self.LABEL] > 0.5).nonzero().view(-1).tolist()
        zero = self.zero_loss()  # a batch without positives
        if not positive:
            return zero
        rows = interaction[positive]
        items, users = rows[self.ITEM_ID], rows[self.USER_ID]
        if self.stage == "align":
            with torch.no_grad():
                user = self.source(rows)[0]
                negatives = torch.tensor(self.negatives(users, items, 1), device=items.device).view(-1)
                pos = (self.source.item_vectors(items), self.text_vectors[items])
                neg = (self.source.item_vectors(negatives), self.text_vectors[negatives])
            return self.aligner.loss(user, pos, neg) + zero
        histories = self.histories(rows, self.history_length)
        candidates = []
        for item, negatives in zip(items.tolist(), self.negatives(users, items, self.candidate_num - 1)):
            listed = [item, *negatives]
            candidates.append([listed[k] for k in torch.randperm(len(listed)).tolist()])
        index = list(range(len(positive)))
        token_ll = self._title_token_ll(rows, index, histories, candidates, np.arange(len(index)), items.tolist())
        return -torch.stack([t.mean() for t in token_ll]).mean() + zero  # the title's likelihood (teacher forcing)

    # --- ranking --------------------------------------------------------------------------------
    def queries(self, interaction) -> tuple[list[int], np.ndarray, list[list[int]]]:
        """The batch's queries: one representative row each, the row → query map, and each query's
        candidate set in the loader's order (seeded random per query: the same for every model and
        run, and the target's place in it tells nothing)."""
        if CANDIDATES_FIELD not in interaction:
            raise InputError(f"ALLMRec.predict: rows need their query's candidate set ('{CANDIDATES_FIELD}', given by the uniN/popN loaders)")
        users = interaction[self.USER_ID].tolist()
        seqs = interaction[self.ITEM_SEQ].tolist()
        cands = interaction[CANDIDATES_FIELD].tolist()
        group, first, _ = group_rows(list(zip(users, map(tuple, seqs), map(tuple, cands))))
        return first, group, [cands[r] for r in first]

    def predict(self, interaction) -> torch.Tensor:
        if self.stage == "align":  # stage 1 alone ranks by its own score: no LLM yet
            return self.align_scores(interaction)
        if self.rank_by == "generate":
            first, group, candidates = self.queries(interaction)
            every = self.histories(interaction, self.history_length)
            return self._generate_and_match(interaction, first, group, [every[r] for r in first], candidates)
        token_ll = self.candidate_title_ll(interaction, soft_tokens=self.soft_tokens)
        return self.rank_scores(token_ll, interaction[self.ITEM_ID].tolist(), self.rank_by)

    def rank_scores(self, token_ll: list[torch.Tensor], items: list[int], rank_by: str) -> torch.Tensor:
        """The rows' scores under ``rank_by`` (not ``generate``) from their titles' token
        log-likelihoods (:meth:`candidate_title_ll`): every score combines the same likelihoods."""
        context_free = self.context_free(items) if rank_by == "relative" else torch.zeros(len(items))
        return title_scores(token_ll, context_free, rank_by)

    def candidate_title_ll(self, interaction, shuffle_tokens: torch.Generator | None = None,
                           soft_tokens: bool = True) -> list[torch.Tensor]:
        """Each candidate row's title token log-likelihoods after its query's prompt. With
        ``shuffle_tokens``, each query's candidate soft tokens are permuted among its candidates
        (the titles stay in place): a model that reads its soft tokens then ranks differently.
        ``soft_tokens=False``: the same prompt with no soft token at all — the frozen LLM alone
        on the titles, the reference the soft tokens must improve on."""
        first, group, candidates = self.queries(interaction)
        every = self.histories(interaction, self.history_length)
        token_items = None
        if shuffle_tokens is not None:
            token_items = [[c[k] for k in torch.randperm(len(c), generator=shuffle_tokens).tolist()] for c in candidates]
        return self._title_token_ll(interaction, first, [every[r] for r in first], candidates, group,
                                    interaction[self.ITEM_ID].tolist(), token_items, soft_tokens)

    # --- diagnostics: does the LLM get items it can tell apart? ---------------------------------
    @torch.no_grad()
    def candidate_token_cosine(self, interaction) -> torch.Tensor:
        """Per query of the batch, the mean pairwise cosine of its candidates' item soft tokens
        (a collapsed stage 1 gives ~1: the LLM sees one vector after every title)."""
        _, _, candidates = self.queries(interaction)
        device = self.text_vectors.device
        return torch.stack([mean_pairwise_cosine(self.item_tokens(torch.tensor(c, device=device))) for c in candidates])

    @torch.no_grad()
    def own_title_rank(self) -> torch.Tensor:
        """For each catalogue item, how many other titles' text latents lie nearer (Euclidean, the
        matching loss's metric) to its item latent than its own title's: 0 = its own is nearest."""
        items = torch.arange(1, self.n_items, device=self.text_vectors.device)
        distance = torch.cdist(self.item_latents(items).float(), self.text_latents(items).float())
        return (distance < distance.diagonal().unsqueeze(1)).sum(1)

    @torch.no_grad()
    def align_scores(self, interaction) -> torch.Tensor:
        """Stage 1's score of each row (no LLM): SASRec's user representation against the row's
        decoded item (:meth:`ItemTextAligner.item_scores`). What the collaborative side knows
        before any of it reaches the LLM; the reference the LLM stage must pass."""
        user = self.source(interaction)[0]
        return self.aligner.item_scores(user, self.source.item_vectors(interaction[self.ITEM_ID])).float()

    def _generate_and_match(self, interaction, first, group, histories, candidates) -> torch.Tensor:
        """Greedy generation from each query's prompt; a candidate scores the similarity of its
        title to the text (difflib ratio, case-folded, quotes stripped)."""
        seqs = [self.prompt(h, c) + self.cue[-1:] for h, c in zip(histories, candidates)]
        embeds, mask, _ = embed_soft_prompts(self.llm.get_input_embeddings(), seqs,
                                             self.prompt_vectors(interaction, first, histories, candidates), self.pad_id)
        with self.precision.autocast():
            generated = self.llm.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=self.max_new_tokens,
                                          do_sample=False, pad_token_id=self.pad_id)
        texts = [t.split('"')[1] if t.count('"') >= 2 else t.strip(' "') for t in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]
        items = interaction[self.ITEM_ID].tolist()
        # similarity ratios tie often; a tie goes to the candidate listed first (the listed order is
        # random, unlike the item-id order RecBole's top-k would otherwise break ties by)
        place = [candidates[g].index(i) for g, i in zip(group, items)]
        scores = [difflib.SequenceMatcher(None, texts[g].casefold(), self.titles[i].casefold()).ratio() - 1e-6 * p
                  for g, i, p in zip(group, items, place)]
        return torch.tensor(scores, device=interaction[self.ITEM_ID].device)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        raise InputError("eval_args.mode: ALLMRec ranks candidate sets (uniN/popN), not the full catalogue")
