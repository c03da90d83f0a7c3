"""CLLM4Rec: user and item tokens in the LLM's vocabulary, learned by soft+hard prompting and
finetuned with a multinomial item head (Zhu et al., WWW 2024)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from recbole_collm.model.abstract_recommender import LLMRecommender
from recbole_collm.model.candidates import CandidateRankingMixin
from recbole_collm.model.llm.backbone import load_llm
from recbole_collm.model.llm.batching import group_rows
from recbole_collm.model.llm.projector import IDTokenEmbedding
from recbole_collm.model.llm.prompts import leading_special_ids, pad_id, text_ids
from recbole_collm.model.llm.soft_prompts import SLOT, embed_soft_prompts


class CLLM4Rec(CandidateRankingMixin, LLMRecommender):
    """One new token per user and per item (:class:`IDTokenEmbedding` rows, the same table as the
    UI-token ablation; the LLM's own rows and weights stay frozen, as in the official code, which
    trains only the new token embeddings).

    - ``pretrain`` (soft+hard prompting): a *collaborative* LM on interaction documents
      ``<user_u> has interacted with <item_1> … <item_n>`` — each item token predicted from what
      precedes it, over the item tokens only (a head tied to the item rows) — and a *content* LM on
      ``<user_u> has interacted with <item_j>, a movie titled`` + the title, predicted in the
      ordinary vocabulary by the LLM's own head. Each branch has its own user/item rows; the mutual
      regularisation ``lambda_v · Σ ‖collaborative − content‖²`` over the token occurrences of
      each branch's sequences ties them, each branch pulled toward the other's (detached) rows.
    - ``finetune``: ``<user_u> has interacted with <history items>, the user will interact with:``;
      the last hidden state through the tied item head is a multinomial over all items, trained on
      the row's item (positive rows) with the regulariser toward the (now frozen) content rows.
      The official finetuning predicts a share of the user's train items dropped from a shuffled
      prompt of the rest (a multinomial over a set); here each row predicts its own next item from
      the items before it, the question every ranking query of the plugin asks (a row's history
      is what it may see), so the training and evaluation prompts are the same.

    One forward per query scores every item (``full_sort_predict``); ``predict`` reads the row's
    item from the same logits. Rows: the plugin's labeled rows with their per-row history; only
    positive rows are interactions (label-0 rows still feed the content LM: their titles are text)."""

    tunable_modules = ("tokens", "content_tokens")
    stage_sequence = ("pretrain", "finetune")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self._init_catalogue(config, dataset)
        self.lambda_v = float(config["lambda_v"])
        titles = self._item_titles(dataset, "CLLM4Rec's content LM needs them")
        self.llm, tokenizer = load_llm(config, self.precision.weights_dtype, self.precision.linear_dtype)
        hidden = self.llm.config.hidden_size
        std = float(self.llm.get_input_embeddings().weight.detach().float().std())
        self.tokens = IDTokenEmbedding(dataset, hidden, std)  # the collaborative branch (what ranks)
        self.content_tokens = IDTokenEmbedding(dataset, hidden, std)  # the content branch
        encode = text_ids(tokenizer)
        self.pad_id = pad_id(tokenizer)
        self.bos = leading_special_ids(tokenizer)
        self.interacted = encode(" has interacted with")
        self.will_interact = encode(", the user will interact with:")
        self.titled = encode(f", a {self.item_word} titled")
        self.title_ids = [encode(f" {t}") for t in titles]
        # a permutation of the user ids whose tokens stand in for each user's own (an evaluation
        # switch, never trained): the reference that says how much of the ranking the user token carries
        self.user_token_permutation: torch.Tensor | None = None
        self.set_stage(self.stages[0])

    def _trainable_in(self, stage: str) -> list:
        """``pretrain`` trains both branches' rows, ``finetune`` the collaborative ones."""
        return [self.tokens, self.content_tokens] if stage == "pretrain" else [self.tokens]

    # --- sequences ------------------------------------------------------------------------------
    def _hidden(self, seqs: list[list[int]], vectors: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer hidden states of left-padded soft prompts, and their attention mask."""
        embeds, mask, positions = embed_soft_prompts(self.llm.get_input_embeddings(), seqs, vectors, self.pad_id)
        with self.precision.autocast():
            out = self.llm.get_decoder()(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)
        return out.last_hidden_state, mask

    def query_hidden(self, interaction) -> torch.Tensor:
        """``<user> has interacted with <history>, the user will interact with:`` → last hidden,
        once per distinct (user, history): the candidate rows of one query share it."""
        users, histories = interaction[self.USER_ID], self.histories(interaction)
        query, rows, _ = group_rows([(u, tuple(h)) for u, h in zip(users.tolist(), histories)])
        seqs = [self.bos + [SLOT] + self.interacted + [SLOT] * len(histories[r]) + self.will_interact for r in rows]
        token_users = users if self.user_token_permutation is None else self.user_token_permutation.to(users.device)[users]
        vectors = [torch.cat([self.tokens.user(token_users[r : r + 1]),
                              self.tokens.item(torch.tensor(histories[r], dtype=torch.long, device=users.device))]) for r in rows]
        hidden = self._hidden(seqs, vectors)[0][:, -1]
        return hidden[torch.as_tensor(query, device=hidden.device)]

    def item_logits(self, interaction) -> torch.Tensor:
        """``(rows, n_items)``: the multinomial item head (tied to the collaborative item rows);
        the padding item never wins."""
        logits = self.query_hidden(interaction).float() @ self.tokens.item.weight.float().T
        logits[:, 0] = -torch.inf
        return logits

    # --- losses ---------------------------------------------------------------------------------
    def collaborative_lm(self, users: torch.Tensor, docs: list[list[int]]) -> torch.Tensor:
        """Interaction documents; each item token predicted from the position before it, over
        the item tokens only."""
        seqs = [self.bos + [SLOT] + self.interacted + [SLOT] * len(d) for d in docs]
        device = users.device
        vectors = [torch.cat([self.tokens.user(users[b : b + 1]), self.tokens.item(torch.tensor(d, dtype=torch.long, device=device))])
                   for b, d in enumerate(docs)]
        states, targets = _predicting_states(self._hidden(seqs, vectors)[0], docs)
        logits = states.float() @ self.tokens.item.weight.float().T
        return F.cross_entropy(logits, targets)

    def content_lm(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``<user> has interacted with <item>, a movie titled`` + title: the title's tokens in the
        LLM's own vocabulary."""
        titles = [self.title_ids[i] for i in items.tolist()]
        seqs = [self.bos + [SLOT] + self.interacted + [SLOT] + self.titled + t for t in titles]
        vectors = [torch.cat([self.content_tokens.user(users[b : b + 1]), self.content_tokens.item(items[b : b + 1])])
                   for b in range(len(titles))]
        states, targets = _predicting_states(self._hidden(seqs, vectors)[0], titles)
        logits = self.vocabulary_logits(states)
        return F.cross_entropy(logits, targets)

    def mutual_regularisation(self, trained: IDTokenEmbedding, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``lambda_v`` · Σ ‖row of ``trained`` − the other branch's row‖² over every occurrence
        of a user/item token in the batch's sequences (``users``, ``items``: one entry per
        occurrence), the other branch held fixed (detached). As the official code: the Gaussian
        prior tying the branches, summed over token positions (``MSELoss(reduction='sum')``),
        each branch updated against the other's current rows."""
        other = self.content_tokens if trained is self.tokens else self.tokens
        distance = ((trained.user(users) - other.user(users).detach()).pow(2).sum()
                    + (trained.item(items) - other.item(items).detach()).pow(2).sum())
        return self.lambda_v * distance

    def calculate_loss(self, interaction) -> torch.Tensor:
        positive = interaction[self.LABEL] > 0.5
        users, items = interaction[self.USER_ID], interaction[self.ITEM_ID]
        histories = self.histories(interaction)
        loss = self.zero_loss()  # a batch without positives
        pos = positive.nonzero().view(-1).tolist()
        # the item tokens of the positive rows' sequences: history, then the row's own item
        occurrences = torch.tensor([i for r in pos for i in histories[r] + [int(items[r])]], dtype=torch.long, device=items.device)
        if self.stage == "pretrain":
            if pos:
                docs = [histories[r] + [int(items[r])] for r in pos]
                loss = loss + self.collaborative_lm(users[pos], docs)
                loss = loss + self.mutual_regularisation(self.tokens, users[pos], occurrences)
            loss = loss + self.content_lm(users, items)
            return loss + self.mutual_regularisation(self.content_tokens, users, items)
        if not pos:
            return loss
        logits = self.item_logits(interaction[pos])
        loss = loss + F.cross_entropy(logits, items[pos])
        return loss + self.mutual_regularisation(self.tokens, users[pos], occurrences)

    # --- scoring --------------------------------------------------------------------------------
    def predict(self, interaction) -> torch.Tensor:
        """The row's item's logit under the item head (ranks candidates; comparable across rows of
        one query only)."""
        logits = self.item_logits(interaction)
        return logits.gather(1, interaction[self.ITEM_ID].view(-1, 1)).view(-1)

    def full_sort_predict(self, interaction) -> torch.Tensor:
        return self.mask_to_catalogue(self.item_logits(interaction))


def _predicting_states(hidden: torch.Tensor, tails: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """For left-padded sequences ending in ``tails[b]``: the hidden state before each tail token
    (the one that predicts it) and the token itself, all rows' tails concatenated."""
    width, device = hidden.shape[1], hidden.device
    rows = [b for b, tail in enumerate(tails) for _ in tail]
    cols = [width - len(tail) + k - 1 for tail in tails for k in range(len(tail))]
    targets = torch.tensor([token for tail in tails for token in tail], device=device)
    return hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)], targets
